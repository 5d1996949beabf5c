"""Equal-bit grids (`--bits-per-image B`): for each method, the codebook size whose bit budget is
closest to B at a preset's latent grid.

A method's budget at K is `Quantizer.budget_bits` (its options, such as rvq's levels, pq's groups or
vqct's top_k, stay as given; only K varies). Budgets grow with K, so the K whose budget first reaches
B is found by bisection; then the nearest K on either side that the method accepts (its `check`:
LFQ's powers of two, FSQ's products of levels, VQCT's vocabulary) is taken, the closer budget
winning (the smaller K on a tie). A method none of whose valid K comes within TOLERANCE of B is
refused with one line before any run starts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import methods
from bench.core.errors import UserError
from bench.runs import presets

TOLERANCE = 0.05  # a chosen budget lies within 5% of the asked one
MAX_CODEBOOK_SIZE = 1 << 24  # the search's upper end: far beyond any codebook a run can hold


@dataclass(frozen=True)
class Choice:
    method: str
    budget: float  # the bits per image asked for
    codebook_size: int
    bits: float  # the chosen K's bits per image

    def describe(self) -> str:
        return f"{self.method} K={self.codebook_size} ({self.bits:.1f} bits, {100 * (self.bits / self.budget - 1):+.1f}%)"


def latent_side(preset_name: str) -> int:
    """Side of the preset's square latent grid: resolution / 2^(downsamplings)."""
    model = presets.preset(preset_name).model
    return model.resolution // 2 ** (len(model.ch_mult) - 1)


def choose(method: str, method_options: dict[str, Any], budget: float, preset_name: str) -> Choice:
    """The codebook size of `method` whose bits per image at the preset's grid are closest to `budget`."""
    cls = methods.entry(method).cls
    options = methods.build_options(method, **method_options)
    dim, side = presets.preset(preset_name).model.embed_dim, latent_side(preset_name)

    def bits(k: int) -> float | None:
        try:
            return float(cls.budget_bits(k, dim, options, side))
        except (UserError, ValueError):  # K beyond a vocabulary, or a level left empty
            return None

    def valid(k: int) -> bool:
        try:
            cls.check(k, dim, options)
        except UserError:
            return False
        return bits(k) is not None

    fixed = cls.fixed_codebook_size(options)
    if fixed is not None:
        return _fixed(method, budget, fixed, float(cls.budget_bits(fixed, dim, options, side)), side, preset_name)
    lo, hi = 2, MAX_CODEBOOK_SIZE
    while lo < hi:  # the smallest K whose budget reaches B (an undefined budget counts as too large)
        mid = (lo + hi) // 2
        b = bits(mid)
        if b is None or b >= budget:
            hi = mid
        else:
            lo = mid + 1
    window = (budget * (1 - TOLERANCE), budget * (1 + TOLERANCE))
    candidates = [k for k in (_first(valid, bits, lo - 1, -1, window), _first(valid, bits, lo, 1, window))
                  if k is not None]
    if not candidates:
        raise UserError(f"--bits-per-image {budget:g}: {method} has no codebook size within "
                        f"{100 * TOLERANCE:.0f}% of it at preset {preset_name}'s {side}x{side} grid; "
                        f"drop {method} from --methods or ask another budget")
    best = min(candidates, key=lambda k: (abs(bits(k) - budget), k))
    return Choice(method, budget, best, bits(best))


def _fixed(method: str, budget: float, k: int, bits: float, side: int, preset_name: str) -> Choice:
    if abs(bits / budget - 1) > TOLERANCE:
        raise UserError(f"--bits-per-image {budget:g}: {method}'s codebook is fixed (K={k}), {bits:.1f} bits per image at "
                        f"preset {preset_name}'s {side}x{side} grid, not within {100 * TOLERANCE:.0f}% of it; "
                        f"drop {method} from --methods or ask another budget")
    return Choice(method, budget, k, bits)


def _first(valid: Any, bits: Any, start: int, step: int, window: tuple[float, float]) -> int | None:
    """From `start` in direction `step`, the first K the method accepts while the budget stays in `window`."""
    k = start
    while 2 <= k <= MAX_CODEBOOK_SIZE:
        b = bits(k)
        if b is None or not window[0] <= b <= window[1]:
            if b is not None and (b < window[0] if step < 0 else b > window[1]):
                return None  # left the window: budgets only move further from B this way
            if b is None and step > 0:
                return None  # beyond a vocabulary
        elif valid(k):
            return k
        k += step
    return None


def choose_all(method_names: list[str], per_method: dict[str, dict[str, Any]], budgets: list[float],
               preset_name: str) -> list[Choice]:
    """Every (budget, method) choice, or the first refusal, before any run starts."""
    return [choose(m, per_method.get(m, {}), b, preset_name) for b in budgets for m in method_names]
