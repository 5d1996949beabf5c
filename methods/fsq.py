"""FSQ: finite scalar quantisation.

Finite Scalar Quantization: VQ-VAE Made Simple (Mentzer, Minnen, Agustsson, Tschannen, ICLR 2024),
https://arxiv.org/abs/2309.15505, Section 3 and Appendix A.1.

The latent has d = len(levels) channels. Channel i is bounded to L_i values with a shifted tanh,
rounded to the nearest integer with a straight-through gradient, and rescaled to [-1, 1]. The
implicit codebook is the grid of prod(L_i) points; no codebook loss, no commitment loss, no
auxiliary loss at all. Index = sum_i level_i * prod_{j<i} L_j (channel 0 varies fastest).

K mapping (`levels_for`):
- `levels` given: its product must equal K.
- else the levels of the paper's Table 1 when K is one of its sizes (240: 8,6,5; 1000: 8,5,5,5;
  4375: 7,5,5,5,5; 15360: 8,8,8,6,5; 64000: 8,8,8,5,5,5);
- else the fewest levels in [3, 8] whose product is exactly K, as balanced as possible (this rule
  also reproduces every row of Table 1), e.g. 64 -> 8,8; 256 -> 8,8,4; 512 -> 8,8,8.
- K with a prime factor above 8, or K < 3, is refused with the nearest valid sizes.
`latent_channels` = len(levels), so the `dim` argument (the preset's embed_dim) is not used.
"""
from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from bench.core.errors import UserError
from bench.core.option_ranges import at_least, option

from .base import Quantizer, QuantOut, flatten_latent, unflatten_latent
from .registry import register_method

# Table 1 of the paper: recommended levels per target codebook size.
PAPER_LEVELS: dict[int, tuple[int, ...]] = {
    240: (8, 6, 5),
    1000: (8, 5, 5, 5),
    4375: (7, 5, 5, 5, 5),
    15360: (8, 8, 8, 6, 5),
    64000: (8, 8, 8, 5, 5, 5),
}
# Automatic levels lie in this range. Level 2 is excluded: with an even number of levels the grid
# is asymmetric ({-1, 0} for L = 2), and the paper recommends L_i >= 5 where K allows.
MIN_LEVEL, MAX_LEVEL = 3, 8
_BOUND_EPS = 1e-3  # keeps tanh's bound just outside the outermost levels (paper's Appendix A.1)


@functools.lru_cache(maxsize=None)
def _factorisations(k: int, max_factor: int) -> tuple[tuple[int, ...], ...]:
    """All non-increasing tuples of integers in [MIN_LEVEL, max_factor] whose product is k."""
    if k == 1:
        return ((),)
    out = []
    for f in range(min(max_factor, k), MIN_LEVEL - 1, -1):
        if k % f == 0:
            out.extend((f,) + rest for rest in _factorisations(k // f, f))
    return tuple(out)


def auto_levels(k: int) -> tuple[int, ...] | None:
    """Fewest levels in [MIN_LEVEL, MAX_LEVEL] with product k, most balanced first; None if none."""
    if k in PAPER_LEVELS:
        return PAPER_LEVELS[k]
    options = [f for f in _factorisations(k, MAX_LEVEL) if f]
    if not options:
        return None
    # Fewest dimensions, then the largest smallest level (balanced), then the largest levels first.
    return min(options, key=lambda f: (len(f), -min(f), tuple(-x for x in f)))


def nearest_valid_sizes(k: int, n: int = 2) -> list[int]:
    # islice stops at the n-th hit: a list here would factorise every size below k (seconds per refusal
    # at k ~ 65,536, which --bits-per-image's search meets many times)
    below = list(itertools.islice((c for c in range(k - 1, MIN_LEVEL - 1, -1) if auto_levels(c)), n))
    above, c = [], k + 1
    while len(above) < n:
        if auto_levels(c):
            above.append(c)
        c += 1
    return sorted(below + above)


def levels_for(k: int, levels: tuple[int, ...] | None, method: str = "fsq") -> tuple[int, ...]:
    """The levels of a K (module docstring); `method` names the caller in messages (ifsq and fsp share
    this rule). The smallest level a method allows is the range declared on its `levels` option,
    checked by the registry before this runs."""
    if levels is not None:
        if isinstance(levels, (str, int)) or not levels or not all(isinstance(x, int) for x in levels):
            raise UserError(f"{method}: levels must be a sequence of integers such as (8, 5, 5, 5), got {levels!r}")
        levels = tuple(int(x) for x in levels)
        if math.prod(levels) != k:
            raise UserError(f"{method}: levels {levels} give {math.prod(levels)} codes, not the codebook size {k}")
        return levels
    found = auto_levels(k)
    if found is None:
        raise UserError(f"{method}: codebook size {k} is not a product of levels in [{MIN_LEVEL}, {MAX_LEVEL}]; "
                        f"nearest valid sizes: {', '.join(map(str, nearest_valid_sizes(k)))} "
                        f"(or pass levels=... explicitly)")
    return found


@dataclass
class FSQOptions:
    # Levels per latent channel; None derives them from K (module docstring). Set explicitly to
    # reproduce a configuration from elsewhere; the product must equal the codebook size.
    levels: tuple[int, ...] | None = option(None, at_least(2))


@register_method("fsq", "FSQ: bounded tanh + rounding per channel to fixed levels, implicit grid codebook, no aux loss")
class FSQQuantizer(Quantizer):
    """Finite scalar quantisation (https://arxiv.org/abs/2309.15505)."""

    Options = FSQOptions

    bounded_memory = True
    method = "fsq"  # names the method in messages; ifsq and fsp, which share this grid, set their own

    @classmethod
    def check(cls, codebook_size: int, dim: int, options: FSQOptions) -> None:
        levels_for(codebook_size, options.levels, cls.method)  # raises for a K no levels give

    @classmethod
    def parameter_count(cls, codebook_size: int, dim: int, options: FSQOptions) -> int:
        return 0  # the codebook is the implicit grid of levels

    def __init__(self, codebook_size: int, dim: int, options: FSQOptions) -> None:
        super().__init__()
        self.options = options
        self.levels = levels_for(codebook_size, options.levels, self.method)
        self.codebook_size = codebook_size
        self.latent_channels = len(self.levels)  # FSQ defines its own code dimension
        levels = torch.tensor(self.levels, dtype=torch.long)
        basis = torch.cumprod(torch.tensor((1,) + self.levels[:-1]), 0)
        self.register_buffer("_levels", levels, persistent=False)
        self.register_buffer("_basis", basis, persistent=False)

    def _bound(self, z: Tensor) -> Tensor:
        """tanh-bound each channel so that rounding gives exactly L_i integer values."""
        levels = self._levels.to(z.dtype)
        half_l = (levels - 1) * (1 + _BOUND_EPS) / 2
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0).to(z.dtype)
        shift = torch.atanh(offset / half_l)
        return torch.tanh(z + shift) * half_l - offset

    def forward(self, z: Tensor) -> QuantOut:
        rows = flatten_latent(z)
        bounded = self._bound(rows)
        rounded = bounded.round()
        half_width = (self._levels // 2).to(rows.dtype)
        # Straight-through rounding only where a gradient is wanted; otherwise the exact grid point,
        # so that decode_indices reproduces z_q bit for bit.
        q_rows = (bounded + (rounded - bounded).detach() if rows.requires_grad else rounded) / half_width
        idx = ((rounded + half_width).long() * self._basis).sum(-1)
        z_q = unflatten_latent(q_rows, z)
        zero = z.new_zeros(())
        return QuantOut(z_q, idx.view(z.shape[0], z.shape[2], z.shape[3]), zero, {})

    def _level_digits(self, indices: Tensor) -> Tensor:
        """(..., ) indices -> (..., d) level of each channel in [0, L_i): the mixed-radix digits."""
        return (indices.unsqueeze(-1) // self._basis) % self._levels

    def decode_indices(self, indices: Tensor) -> Tensor:
        half_width = self._levels // 2
        level_idx = self._level_digits(indices)
        codes = (level_idx - half_width).float() / half_width.float()
        return codes.permute(0, 3, 1, 2).contiguous()
