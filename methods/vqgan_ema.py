"""VQGAN-EMA: nearest-neighbour VQ whose codebook follows exponential moving averages of its assignments.

Neural Discrete Representation Learning (van den Oord, Vinyals, Kavukcuoglu, NeurIPS 2017),
https://arxiv.org/abs/1711.00937, Appendix A.1 (EMA codebook updates); as used by the VQGAN code base
(taming-transformers' `EMAVectorQuantizer`, https://arxiv.org/abs/2012.09841).

The codebook gets no gradient and no codebook loss: after each training forward pass, each code
becomes the moving average of the encoder vectors assigned to it,

    N_k <- decay * N_k + (1 - decay) * n_k            n_k: vectors assigned to code k in the batch
    m_k <- decay * m_k + (1 - decay) * sum_{i->k} z_i
    e_k  = m_k / N~_k,  N~_k = (N_k + eps) / (sum_j N_j + K eps) * sum_j N_j   (Laplace smoothing)

and the encoder is pulled towards its codes by the commitment loss beta * ||z - sg[e]||^2 only.
`N` and `m` are registered buffers, so a checkpoint (safetensors of the state dict) restores them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.core.errors import UserError

from .base import Quantizer, QuantOut, flatten_latent, nearest_codes, straight_through, unflatten_latent
from .registry import register_method


@dataclass
class VQGANEMAOptions:
    beta: float = 0.25  # commitment weight, VQ-VAE's value; the only loss this quantizer adds
    decay: float = 0.99  # EMA decay of counts and sums (VQ-VAE, taming's EMAVectorQuantizer)
    # Laplace smoothing of the counts: keeps an unused code's denominator away from zero, so the
    # division m_k / N_k never blows up (VQ-VAE's epsilon).
    eps: float = 1e-5


@register_method("vqgan-ema", "VQGAN-EMA: nearest-neighbour VQ, codebook by EMA of assignments (decay 0.99), commitment loss only")
class VQGANEMAQuantizer(Quantizer):
    """VQ-VAE / VQGAN with an EMA codebook (https://arxiv.org/abs/1711.00937, Appendix A.1)."""

    Options = VQGANEMAOptions

    bounded_memory = True

    @classmethod
    def check(cls, codebook_size: int, dim: int, options: VQGANEMAOptions) -> None:
        if not 0.0 < options.decay < 1.0:
            raise UserError(f"vqgan-ema: decay must be in (0, 1), got {options.decay}")
        if options.eps <= 0:
            raise UserError(f"vqgan-ema: eps must be positive, got {options.eps}")
        if options.beta < 0:
            raise UserError(f"vqgan-ema: beta must be >= 0, got {options.beta}")

    def __init__(self, codebook_size: int, dim: int, options: VQGANEMAOptions) -> None:
        super().__init__()
        self.check(codebook_size, dim, options)
        self.options = options
        self.codebook_size = codebook_size
        self.latent_channels = dim
        # The same initialisation as `vqgan` (uniform in +-1/K), so that the two differ only in how
        # the codebook is updated. taming's EMAVectorQuantizer draws N(0, 1) codes instead; with
        # this benchmark's encoder (latents of norm ~1) that left all but a handful of codes
        # farther away than the nearest few, never assigned and so never moved by the EMA.
        embed = torch.empty(codebook_size, dim).uniform_(-1.0 / codebook_size, 1.0 / codebook_size)
        self.register_buffer("embed", embed)
        # Counts start at one and sums at the codes themselves (vector-quantize-pytorch's choice,
        # not taming's zeros): a code that is never assigned then stays where it is instead of
        # drifting to m_k / eps, i.e. to a huge norm, as it does with zero-initialised counts.
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        self.register_buffer("embed_avg", embed.clone())

    def forward(self, z: Tensor) -> QuantOut:
        rows = flatten_latent(z)
        idx = nearest_codes(rows, self.embed)[:, 0]
        q_rows = F.embedding(idx, self.embed)  # the codes before this step's update
        if self.training:
            self._ema_update(rows.detach().float(), idx)
        q = unflatten_latent(q_rows, z)
        commitment = F.mse_loss(z, q)
        z_q = straight_through(z, q)
        indices = idx.view(z.shape[0], z.shape[2], z.shape[3])
        return QuantOut(z_q, indices, self.options.beta * commitment, {"commitment": commitment.detach()})

    @torch.no_grad()
    def _ema_update(self, rows: Tensor, idx: Tensor) -> None:
        decay, eps, k = self.options.decay, self.options.eps, self.codebook_size
        counts = torch.bincount(idx, minlength=k).to(rows.dtype)
        sums = torch.zeros_like(self.embed_avg).index_add_(0, idx, rows)
        self.cluster_size.mul_(decay).add_(counts, alpha=1 - decay)
        self.embed_avg.mul_(decay).add_(sums, alpha=1 - decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + eps) / (n + k * eps) * n
        self.embed.copy_(self.embed_avg / smoothed.unsqueeze(1))

    def decode_indices(self, indices: Tensor) -> Tensor:
        return F.embedding(indices, self.embed).permute(0, 3, 1, 2).contiguous()
