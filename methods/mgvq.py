"""MGVQ: multi-group quantisation, G channel groups each on the unit sphere with its OWN sub-codebook,
later groups dropped in nested fashion during training.

MGVQ: Could VQ-VAE Beat VAE? A Generalizable Tokenizer with Multi-group Quantization (Jia et al.,
2025), https://arxiv.org/abs/2507.07997; official code: github.com/MKJia/MGVQ,
efficientvit/models/tokenizer/mgvq.py, class VectorQuantizer (read for the facts below, not copied;
the repository releases inference code, its training code is announced but absent).

The latent keeps its full width and is cut into `groups` sub-tokens of dim / G channels; sub-token g
is l2-normalised and takes the nearest l2-normalised code of its own sub-codebook g, and z_q is that
NORMALISED code (the official `l2_norm=True` path), straight-through to the normalised sub-token, with
VQ-VAE's codebook + beta x commitment loss between them. This is `pq` with spherical lookup, so the
class is pq's (indices (B, H, W, G), global index g K + j, `code_groups`, G log2 K bits per position)
with the normalisation added; it differs from `gsq`, whose groups share one codebook (docs/methods.md).

Nested masking ("coarse to fine"): in training, one uniform draw u per forward pass; group g >= 1 is
replaced by zeros (no value, no gradient, no loss) when u < p_g, with p = `mask_probs` for groups
1, 2, ... (the official first-stage table is 0, 0.2, 0.3, 0.4 for groups 0..3; groups past the
table are never dropped, as there). Non-decreasing p makes the dropped set always a suffix of the
table's groups, so the first groups learn to carry the coarse content. Eval mode never masks.
Initialisation: as the official, uniform in +-1/K then l2-normalised. Left out: the official
frequency-based code resampling (an online re-anchoring as `cvq`'s), see docs/methods.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.core.errors import UserError
from bench.core.option_ranges import AT_LEAST_ONE, NON_NEGATIVE, PROBABILITY, option

from .base import QuantOut, codebook_commitment_loss, flatten_latent, nearest_codes, straight_through, unflatten_latent
from .pq import PQQuantizer
from .registry import register_method


@dataclass
class MGVQOptions:
    groups: int = option(4, AT_LEAST_ONE)  # G sub-codebooks (the official models use 4 and 8)
    beta: float = option(0.25, NON_NEGATIVE)  # commitment weight (the official value)
    # probability that group 1, 2, ... is dropped in a training step; non-decreasing, so drops are nested
    mask_probs: tuple[float, ...] = option((0.2, 0.3, 0.4), PROBABILITY)


@register_method("mgvq", "MGVQ: G l2-normalised channel groups, one spherical sub-codebook each, nested group masking in training")
class MGVQQuantizer(PQQuantizer):
    """Multi-group quantisation (https://arxiv.org/abs/2507.07997): `pq` on the unit sphere plus nested masking."""

    Options = MGVQOptions
    name_in_messages = "mgvq"

    @classmethod
    def check(cls, codebook_size: int, dim: int, options: MGVQOptions) -> None:
        super().check(codebook_size, dim, options)
        p = tuple(options.mask_probs)
        if any(later < earlier for earlier, later in zip(p, p[1:])):
            raise UserError(f"mgvq: mask_probs must be non-decreasing (group g + 1 is dropped whenever group g is), "
                            f"got {','.join(map(str, p))}")

    def __init__(self, codebook_size: int, dim: int, options: MGVQOptions) -> None:
        super().__init__(codebook_size, dim, options)  # pq's G codebooks, uniform in +-1/K
        with torch.no_grad():
            self.codebooks.copy_(F.normalize(self.codebooks, dim=-1))

    def _lookup(self, local: Tensor) -> Tensor:
        """(N, G) indices within each codebook -> (N, dim): the groups' NORMALISED codes side by side."""
        group = torch.arange(self.groups, device=local.device)
        return F.normalize(self.codebooks[group, local], dim=-1).reshape(local.shape[0], -1)

    def kept_groups(self, device: torch.device) -> Tensor:
        """(G,) float, 1 for the groups this forward pass keeps: all of them in eval mode."""
        keep = torch.ones(self.groups, device=device)
        if self.training:
            u = torch.rand(())  # one draw per pass (the official rule), from the seeded global generator
            for g, p in enumerate(self.options.mask_probs[: self.groups - 1], start=1):
                if u < p:
                    keep[g] = 0.0
        return keep

    def forward(self, z: Tensor) -> QuantOut:
        rows = flatten_latent(z)
        unit = F.normalize(rows.view(-1, self.groups, self.sub_dim), dim=-1)
        directions = F.normalize(self.codebooks.detach(), dim=-1)
        local = torch.stack([nearest_codes(unit[:, g].detach(), directions[g])[:, 0] for g in range(self.groups)], dim=1)
        keep = self.kept_groups(z.device).repeat_interleave(self.sub_dim)  # (dim,)
        q = unflatten_latent(self._lookup(local), z)
        z_unit = unflatten_latent(unit.reshape(local.shape[0], -1), z)
        kept = keep.bool()
        # the loss of the kept groups' channels only: a dropped group is absent from the step
        loss, logs = codebook_commitment_loss(q[:, kept], z_unit[:, kept], self.options.beta)
        z_q = straight_through(z_unit, q) * keep.view(1, -1, 1, 1)
        b, _, h, w = z.shape
        offsets = torch.arange(self.groups, device=z.device) * self.level_size
        return QuantOut(z_q, (local + offsets).view(b, h, w, self.groups), loss, logs)
