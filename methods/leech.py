"""Leech: a fixed codebook of the 196,560 minimal vectors of the 24-dimensional Leech lattice.

After Λ24-SQ (CVPR 2026): image tokens from the Leech lattice's first shell, no learned codes. The
lattice: Conway and Sloane, Sphere Packings, Lattices and Groups (3rd ed., 1999), Chapter 4,
Section 11 (https://doi.org/10.1007/978-1-4757-6568-7); its minimal vectors are the densest known
spherical code in 24 dimensions (kissing number 196,560).

The codebook is constructed exactly from the extended binary Golay code C24 (built here from the
cyclic [23, 12, 7] Golay code, generator polynomial x^11 + x^10 + x^6 + x^5 + x^4 + x^2 + 1, and a
parity bit; 759 octads, the codewords of weight 8). In the integer coordinates of Conway and Sloane
(the lattice scaled by sqrt(8), every minimal vector of squared norm 32) they are:

    (±2^8, 0^16)   2 on an octad, an even number of minus signs   759 x 2^7   =  97,152
    (∓3, ±1^23)    -1 on a Golay codeword, +1 elsewhere, then one   24 x 4096  =  98,304
                   coordinate x_j replaced by -3 x_j
    (±4^2, 0^22)   any two coordinates, any signs                  276 x 4    =   1,104
                                                                              = 196,560

Here they are divided by sqrt(32), so every code lies on the unit sphere (times `radius`).

The latent has 24 x `blocks` channels (the `dim` argument, the preset's embed_dim, is not used, as in
`fsq`); each 24-channel block of a position is one lattice code. Every code has the same norm, so the
nearest code by L2 is the one of largest inner product whatever the latent's norm; the search is
`methods.base.nearest_codes` over all 196,560 codes, exact and memory-bounded (its blocks). With
`spherical` (the default) each block is projected onto the sphere of radius `radius` before the
straight-through estimator, so the gradient the encoder gets is that of a code-sized vector. No
codebook, commitment or entropy loss: the loss is zero.

Indices are (B, H, W, blocks), each in [0, 196560). Bits per position: blocks x log2 196,560
(17.58 per 24 dimensions). The codebook is fixed, so K is not a choice (`fixed_codebook_size`): a run
asking any K but 196,560 is refused before it starts, the default grid gives leech this K whatever the
preset's sizes, and `--codebook-sizes full` (or 196560) names it, so a run id and its table rows always
say the K the codes have. Built directly (`methods.create`, the contract tests, the speed benchmark), the
constructor's K argument is not used. `decode_indices` looks the codes up, exactly forward's z_q in eval mode.
"""
from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.core.option_ranges import AT_LEAST_ONE, POSITIVE, option

from .base import Quantizer, QuantOut, flatten_latent, nearest_codes, straight_through, unflatten_latent
from .registry import register_method

LEECH_DIM = 24
KISSING_NUMBER = 196_560
# Generator polynomial of the cyclic [23, 12, 7] binary Golay code, coefficients of x^0 .. x^11.
_GOLAY_POLY = (1, 0, 1, 0, 1, 1, 1, 0, 0, 0, 1, 1)  # 1 + x^2 + x^4 + x^5 + x^6 + x^10 + x^11


@functools.lru_cache(maxsize=1)
def golay_codewords() -> Tensor:
    """The 4096 codewords of the extended binary Golay code C24, (4096, 24) uint8: the 12 cyclic shifts
    of the generator polynomial span the [23, 12, 7] code, each word extended by its parity bit."""
    basis = torch.zeros(12, LEECH_DIM, dtype=torch.long)
    for i in range(12):
        basis[i, i : i + 12] = torch.tensor(_GOLAY_POLY)
    basis[:, 23] = basis[:, :23].sum(1) % 2
    bits = (torch.arange(4096).unsqueeze(1) >> torch.arange(12)) & 1  # every combination of the basis
    return ((bits @ basis) % 2).to(torch.uint8)


@functools.lru_cache(maxsize=1)
def leech_minimal_vectors() -> Tensor:
    """The 196,560 minimal vectors of the Leech lattice in Conway and Sloane's integer coordinates
    (squared norm 32), (196560, 24) int64, in the order of the module docstring's table."""
    words = golay_codewords().long()
    octads = words[words.sum(1) == 8]  # (759, 24)
    # (±2^8, 0^16): sign patterns of 8 with an even number of minus signs
    signs = torch.tensor([s for s in itertools.product((1, -1), repeat=8) if s.count(-1) % 2 == 0])  # (128, 8)
    support = octads.nonzero()[:, 1].view(-1, 8)  # the octads' positions, in order
    shape2 = torch.zeros(len(octads), len(signs), LEECH_DIM, dtype=torch.long)
    shape2.scatter_(2, support[:, None, :].expand(-1, len(signs), -1), 2 * signs[None].expand(len(octads), -1, -1))
    # (∓3, ±1^23): -1 on a codeword, then one coordinate times -3
    base = 1 - 2 * words  # (4096, 24)
    shape3 = base[:, None, :].repeat(1, LEECH_DIM, 1)
    eye = torch.eye(LEECH_DIM, dtype=torch.bool)
    shape3[:, eye] *= -3
    # (±4^2, 0^22)
    pairs = torch.tensor(list(itertools.combinations(range(LEECH_DIM), 2)))
    shape4 = torch.zeros(len(pairs), 4, LEECH_DIM, dtype=torch.long)
    for s, (a, b) in enumerate(itertools.product((4, -4), repeat=2)):
        shape4[torch.arange(len(pairs)), s, pairs[:, 0]] = a
        shape4[torch.arange(len(pairs)), s, pairs[:, 1]] = b
    return torch.cat([shape2.view(-1, LEECH_DIM), shape3.view(-1, LEECH_DIM), shape4.view(-1, LEECH_DIM)])


@dataclass
class LeechOptions:
    blocks: int = option(1, AT_LEAST_ONE)  # 24-channel blocks per position: latent_channels = 24 x blocks
    radius: float = option(1.0, POSITIVE)  # the codes' norm (the lattice's first shell scaled to this sphere)
    # Project each latent block onto the codes' sphere before the straight-through estimator (does not
    # change which code is nearest: every code has the same norm).
    spherical: bool = True


@register_method("leech", "Leech lattice: fixed codebook of the 196,560 minimal vectors of Λ24, one per 24-d block")
class LeechQuantizer(Quantizer):
    """Fixed Leech-lattice codebook (Conway and Sloane, Chapter 4.11; after Λ24-SQ, CVPR 2026)."""

    Options = LeechOptions

    bounded_memory = True

    @classmethod
    def full_codebook_size(cls, dim: int, options: LeechOptions) -> int:
        return KISSING_NUMBER

    @classmethod
    def fixed_codebook_size(cls, options: LeechOptions) -> int:
        return KISSING_NUMBER

    @classmethod
    def parameter_count(cls, codebook_size: int, dim: int, options: LeechOptions) -> int:
        return 0  # the codes are fixed

    def __init__(self, codebook_size: int, dim: int, options: LeechOptions) -> None:
        super().__init__()
        self.options = options
        self.blocks = options.blocks
        self.codebook_size = KISSING_NUMBER  # fixed: see the module docstring
        self.latent_channels = LEECH_DIM * options.blocks
        codes = leech_minimal_vectors().float() * (options.radius / math.sqrt(32.0))
        self.register_buffer("codes", codes, persistent=False)  # rebuilt exactly at every construction

    @classmethod
    def budget_bits(cls, codebook_size: int, dim: int, options: LeechOptions, side: int) -> float:
        return side * side * options.blocks * math.log2(KISSING_NUMBER)  # whatever K: the codebook is fixed

    def index_level_sizes(self) -> tuple[int, ...]:
        return (KISSING_NUMBER,) * self.blocks

    def forward(self, z: Tensor) -> QuantOut:
        rows = flatten_latent(z).reshape(-1, LEECH_DIM)  # (B*H*W*blocks, 24), blocks innermost
        idx = nearest_codes(rows.detach(), self.codes)[:, 0]
        if self.options.spherical:
            rows = F.normalize(rows, dim=1) * self.options.radius
        z_in = unflatten_latent(rows.reshape(-1, self.latent_channels), z)
        z_q = straight_through(z_in, unflatten_latent(self.codes[idx].reshape(-1, self.latent_channels), z))
        b, _, h, w = z.shape
        return QuantOut(z_q, idx.view(b, h, w, self.blocks), z.new_zeros(()), {})

    def decode_indices(self, indices: Tensor) -> Tensor:
        b, h, w, _ = indices.shape
        return self.codes[indices].reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous()


__all__ = ["KISSING_NUMBER", "LEECH_DIM", "LeechOptions", "LeechQuantizer", "golay_codewords", "leech_minimal_vectors"]
