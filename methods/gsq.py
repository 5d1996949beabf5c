"""GSQ: grouped spherical quantisation, G channel groups on the unit sphere sharing ONE codebook.

Scaling Image Tokenizers with Grouped Spherical Quantization (Wang et al., 2024),
https://arxiv.org/abs/2412.02632; official code: github.com/HelmholtzAI-FZJ/flex_gen,
flex_gen/quantizers/group_sphere_quantizer.py (read for the facts below, not copied).

The dim channels of a position are cut into `groups` contiguous sub-vectors of d = dim / G channels
(the paper's G x d). Each sub-vector is l2-normalised and takes the code of the ONE shared codebook of
K d-dimensional codes whose l2-normalised direction is nearest (the paper's "lookup normalisation";
the official class holds a single `nn.Embedding(K, d)` that every group indexes, and the paper reports
usage and perplexity against that one V). So unlike `pq` (G codebooks) a position is one of K^G codes
held as K codes, and the groups' indices share one range [0, K): indices (B, H, W, G),
`codebook_size` K, no `code_groups`. Bits per position: G x log2 K.

Why the code is as it is:
- spherical initialisation (the paper's): codes drawn from a standard normal and l2-normalised, i.e.
  uniform on the unit sphere, where the normalised latents live;
- the quantised value is the code row as stored (the official `indice_to_code` looks the raw row up,
  it does not renormalise it), straight-through to the NORMALISED latent; the loss is VQ-VAE's
  codebook + beta x commitment between that row and the normalised latent, which is what holds the
  codes on the sphere (the paper's "lookup regularisation"). With codes on the sphere (at
  initialisation, or copied from a cosine-similarity peer) z_q equals the normalised code;
- ties between equally near codes go to the lowest index (`nearest_codes`), where the official default
  breaks them at random: ties have probability zero unless d = 1, where a unit 1-vector is +-1 and
  every code on one side ties (the paper's G x 1 rows, with their 0.5% usage).
`decode_indices` looks the G rows up and concatenates them: exactly forward's z_q in eval mode.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.core.option_ranges import AT_LEAST_ONE, NON_NEGATIVE, option

from .base import Quantizer, QuantOut, codebook_commitment_loss, flatten_latent, nearest_codes, straight_through, unflatten_latent
from .pq import PQQuantizer
from .registry import register_method


@dataclass
class GSQOptions:
    groups: int = option(2, AT_LEAST_ONE)  # G, sub-vectors per position, all quantised with the one shared codebook
    beta: float = option(0.25, NON_NEGATIVE)  # commitment weight (the official default, VQ-VAE's value)


@register_method("gsq", "GSQ: G l2-normalised channel groups, one shared spherical codebook, indices (B,H,W,G)")
class GSQQuantizer(PQQuantizer):
    """Grouped spherical quantisation (https://arxiv.org/abs/2412.02632). Reuses pq's grouping rule
    (`check`: G divides dim), bit budget (G log2 K) and index levels; the codebook is shared."""

    Options = GSQOptions
    name_in_messages = "gsq"

    @classmethod
    def parameter_count(cls, codebook_size: int, dim: int, options: GSQOptions) -> int:
        return int(codebook_size) * (int(dim) // options.groups)  # one codebook of K codes of dim / G channels

    def __init__(self, codebook_size: int, dim: int, options: GSQOptions) -> None:
        Quantizer.__init__(self)  # not pq's: it would build G codebooks
        self.check(codebook_size, dim, options)
        self.options = options
        self.groups, self.level_size, self.sub_dim = options.groups, codebook_size, dim // options.groups
        self.latent_channels = dim
        self.codebook_size = codebook_size  # the groups share it: one index range, no code_groups
        self.codebook = nn.Parameter(F.normalize(torch.randn(codebook_size, self.sub_dim), dim=-1))

    def forward(self, z: Tensor) -> QuantOut:
        rows = flatten_latent(z)
        unit = F.normalize(rows.view(-1, self.groups, self.sub_dim), dim=-1)  # the gradient reaches z through it
        directions = F.normalize(self.codebook.detach(), dim=-1)
        local = nearest_codes(unit.detach().reshape(-1, self.sub_dim), directions)[:, 0].view(-1, self.groups)
        q = unflatten_latent(self.codebook[local].reshape(local.shape[0], -1), z)
        z_unit = unflatten_latent(unit.reshape(local.shape[0], -1), z)
        loss, logs = codebook_commitment_loss(q, z_unit, self.options.beta)
        b, _, h, w = z.shape
        return QuantOut(straight_through(z_unit, q), local.view(b, h, w, self.groups), loss, logs)

    def decode_indices(self, indices: Tensor) -> Tensor:
        b, h, w, groups = indices.shape
        rows = self.codebook[indices.reshape(-1, groups)].reshape(b, h, w, -1)
        return rows.permute(0, 3, 1, 2).contiguous()
