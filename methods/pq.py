"""PQ: product quantisation, the latent split into G groups of channels, each with its own codebook.

Product Quantization for Nearest Neighbor Search (Jégou, Douze, Schmid, IEEE TPAMI 2011),
https://doi.org/10.1109/TPAMI.2010.57 (https://inria.hal.science/inria-00514462), Section II.B.

The dim channels of a position are cut into `groups` contiguous sub-vectors of dim / G channels;
sub-vector g is quantised to the nearest of the K codes of codebook g (G independent K-code
codebooks), so a position is one of K^G implicit codes at the memory of G x K sub-codes. Here the
codebooks are learned by gradient inside the autoencoder, as `vqgan`'s: VQ-VAE's codebook +
beta x commitment loss (averaged over every channel, so over the groups), z_q straight-through.

Indices are (B, H, W, G). Group g's code j has the global index g * K + j, `codebook_size` is G x K
and `code_groups` names each group's range, so code usage is reported overall and per group (as
`rvq` with separate codebooks). Bits per position: G x log2 K. `decode_indices` looks the G codes up
and concatenates them, which is exactly forward's z_q in eval mode.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bench.core.errors import UserError
from bench.core.option_ranges import AT_LEAST_ONE, NON_NEGATIVE, option

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
class PQOptions:
    groups: int = option(2, AT_LEAST_ONE)  # G, sub-vectors per position, each with its own codebook of K
    beta: float = option(0.25, NON_NEGATIVE)  # commitment weight, VQ-VAE's value (as vqgan)


@register_method("pq", "PQ: latent split into G channel groups, each quantised with its own codebook, indices (B,H,W,G)")
class PQQuantizer(Quantizer):
    """Product quantisation (https://doi.org/10.1109/TPAMI.2010.57)."""

    Options = PQOptions

    bounded_memory = True
    name_in_messages = "pq"  # subclasses that reuse `check` (gsq, mgvq) name themselves in its refusal

    @classmethod
    def check(cls, codebook_size: int, dim: int, options: PQOptions) -> None:
        if dim % options.groups:
            valid = [g for g in range(1, dim + 1) if dim % g == 0]
            raise UserError(f"{cls.name_in_messages}: groups must divide the latent dimension {dim}; valid: {', '.join(map(str, valid))}; "
                            f"got {options.groups}")

    @classmethod
    def parameter_count(cls, codebook_size: int, dim: int, options: PQOptions) -> int:
        return int(codebook_size) * int(dim)  # G codebooks of K codes of dim / G channels

    def __init__(self, codebook_size: int, dim: int, options: PQOptions) -> None:
        super().__init__()
        self.check(codebook_size, dim, options)
        self.options = options
        self.groups, self.level_size, self.sub_dim = options.groups, codebook_size, dim // options.groups
        self.latent_channels = dim
        self.codebook_size = codebook_size * options.groups
        if options.groups > 1:
            self.code_groups = {f"group{g}": (g * codebook_size, (g + 1) * codebook_size) for g in range(options.groups)}
        # vqgan's initialisation, uniform in +-1/K, per codebook
        codes = torch.empty(options.groups, codebook_size, self.sub_dim).uniform_(-1.0 / codebook_size, 1.0 / codebook_size)
        self.codebooks = nn.Parameter(codes)

    @classmethod
    def budget_bits(cls, codebook_size: int, dim: int, options: PQOptions, side: int) -> float:
        return side * side * options.groups * math.log2(codebook_size)  # groups as given, K varies

    def index_level_sizes(self) -> tuple[int, ...]:
        return (self.level_size,) * self.groups

    def _lookup(self, local: Tensor) -> Tensor:
        """(N, G) indices within each codebook -> (N, dim) rows, the groups' codes side by side."""
        group = torch.arange(self.groups, device=local.device)
        return self.codebooks[group, local].reshape(local.shape[0], -1)

    def forward(self, z: Tensor) -> QuantOut:
        rows = flatten_latent(z)
        parts = rows.detach().view(-1, self.groups, self.sub_dim)
        local = torch.stack([nearest_codes(parts[:, g], self.codebooks[g].detach())[:, 0] for g in range(self.groups)],
                            dim=1)
        q = unflatten_latent(self._lookup(local), z)
        loss, logs = codebook_commitment_loss(q, z, self.options.beta)
        b, _, h, w = z.shape
        offsets = torch.arange(self.groups, device=z.device) * self.level_size
        return QuantOut(straight_through(z, q), (local + offsets).view(b, h, w, self.groups), loss, logs)

    def decode_indices(self, indices: Tensor) -> Tensor:
        b, h, w, groups = indices.shape
        offsets = torch.arange(groups, device=indices.device) * self.level_size
        rows = self._lookup(indices.reshape(-1, groups) - offsets)
        return rows.view(b, h, w, -1).permute(0, 3, 1, 2).contiguous()
