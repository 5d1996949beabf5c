"""VQGAN quantizer: nearest-neighbour vector quantisation with a straight-through estimator.

Taming Transformers for High-Resolution Image Synthesis (Esser, Rombach, Ommer, CVPR 2021),
https://arxiv.org/abs/2012.09841; the VQ layer is VQ-VAE's (van den Oord et al., 2017,
https://arxiv.org/abs/1711.00937).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import QuantOut, Quantizer, flatten_latent, nearest_codes, unflatten_latent
from .registry import register_method


@dataclass
class VQGANOptions:
    beta: float = 0.25  # commitment weight, VQ-VAE's value
    # The original VQGAN code put beta on the codebook term, ||sg[z]-e||^2*beta + ||z-sg[e]||^2
    # (its `legacy=True`). Kept so published VQGAN numbers can be reproduced; off by default.
    legacy: bool = False


@register_method("vqgan", "VQGAN: nearest-neighbour VQ, straight-through, codebook + commitment loss")
class VQGANQuantizer(Quantizer):
    """VQGAN / VQ-VAE vector quantisation (https://arxiv.org/abs/2012.09841)."""

    Options = VQGANOptions

    def __init__(self, codebook_size: int, dim: int, options: VQGANOptions) -> None:
        super().__init__()
        self.options = options
        self.codebook_size = codebook_size
        self.latent_channels = dim
        self.embedding = nn.Embedding(codebook_size, dim)
        # Taming's initialisation: uniform in +-1/K.
        self.embedding.weight.data.uniform_(-1.0 / codebook_size, 1.0 / codebook_size)

    def forward(self, z: Tensor) -> QuantOut:
        rows = flatten_latent(z)
        idx = nearest_codes(rows, self.embedding.weight)[:, 0]
        q = unflatten_latent(self.embedding(idx), z)
        codebook = F.mse_loss(q, z.detach())
        commitment = F.mse_loss(z, q.detach())
        beta = self.options.beta
        loss = beta * codebook + commitment if self.options.legacy else codebook + beta * commitment
        z_q = z + (q - z).detach()
        indices = idx.view(z.shape[0], z.shape[2], z.shape[3])
        return QuantOut(z_q, indices, loss, {"codebook": codebook.detach(), "commitment": commitment.detach()})

    def decode_indices(self, indices: Tensor) -> Tensor:
        return self.embedding(indices).permute(0, 3, 1, 2).contiguous()
