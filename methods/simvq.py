"""SimVQ: a frozen random codebook reparameterised by one learned linear layer.

Addressing Representation Collapse in Vector Quantized Models with One Linear Layer
(Zhu, Li, Wang, Wen, Zhang, Wang, 2024), https://arxiv.org/abs/2411.02038.

The codebook C (K x dim) is drawn once from N(0, 1/dim) and never trained; the codes used are
C W, with W a learned dim x dim matrix. Every step's codebook gradient goes to W, so it moves the
whole codebook (the span of C) instead of only the selected codes, which is what keeps all codes
in use. Nearest-neighbour search against C W, straight-through estimator, and the VQ-VAE losses
||sg[z] - CW||^2 + beta ||z - sg[CW]||^2 (the paper's form: beta on the commitment term).
C is a persistent buffer, so a checkpoint restores it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.core.option_ranges import NON_NEGATIVE, option

from .base import (
    Quantizer,
    QuantOut,
    codebook_commitment_loss,
    flatten_latent,
    nearest_codes,
    straight_through,
    unflatten_latent,
)
from .registry import register_method


@dataclass
class SimVQOptions:
    beta: float = option(0.25, NON_NEGATIVE)  # commitment weight, on ||z - sg[q]||^2 (SimVQ's loss, VQ-VAE's value)
    # A bias in the projection adds a learned offset to every code. The paper's codebook is C W
    # without one (as in vector-quantize-pytorch); kept as an option for the released code's
    # nn.Linear default.
    proj_bias: bool = False


@register_method("simvq", "SimVQ: frozen random codebook times one learned linear layer, nearest neighbour, STE")
class SimVQQuantizer(Quantizer):
    """SimVQ (https://arxiv.org/abs/2411.02038)."""

    Options = SimVQOptions

    bounded_memory = True

    @classmethod
    def parameter_count(cls, codebook_size: int, dim: int, options: SimVQOptions) -> int:
        return codebook_size * dim + dim * dim  # the frozen codebook (held, not trained) and the learned map

    def __init__(self, codebook_size: int, dim: int, options: SimVQOptions) -> None:
        super().__init__()
        self.check(codebook_size, dim, options)
        self.options = options
        self.codebook_size = codebook_size
        self.latent_channels = dim
        self.register_buffer("frozen_codebook", torch.randn(codebook_size, dim) * dim**-0.5)
        self.proj = nn.Linear(dim, dim, bias=options.proj_bias)

    def codebook(self) -> Tensor:
        """The codes actually used, C W (K x dim)."""
        return self.proj(self.frozen_codebook)

    def forward(self, z: Tensor) -> QuantOut:
        rows = flatten_latent(z)
        codebook = self.codebook()
        idx = nearest_codes(rows, codebook)[:, 0]
        q = unflatten_latent(F.embedding(idx, codebook), z)
        loss, logs = codebook_commitment_loss(q, z, self.options.beta)
        z_q = straight_through(z, q)
        indices = idx.view(z.shape[0], z.shape[2], z.shape[3])
        return QuantOut(z_q, indices, loss, logs)

    def decode_indices(self, indices: Tensor) -> Tensor:
        # The same C W product as forward, then a lookup: bit-identical to forward's z_q in eval.
        return F.embedding(indices, self.codebook()).permute(0, 3, 1, 2).contiguous()
