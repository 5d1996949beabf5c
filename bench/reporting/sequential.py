"""A group-sequential paired t-test across seeds, for `run_bench.py --until-resolved`: looking again
after every batch of added seeds without inflating the rate of false differences.

The design (docs/results.md, "Running seeds until a difference is resolved", says why this one):
- Looks at fixed seed counts, `first`, `first + step`, ... up to `max_seeds` (the last look is always
  at `max_seeds`), fixed before any data is seen: the number of looks is known in advance.
- Two-sided level `alpha` spent over the looks by the Lan-DeMets spending function of O'Brien-Fleming
  type (Lan and DeMets 1983, Biometrika 70:659-663; O'Brien and Fleming 1979, Biometrics 35:549-556):
  alpha(t) = 4 - 4 Phi(z_{1-alpha/4} / sqrt(t)) at information fraction t = seeds / max_seeds,
  i.e. alpha/2 per side. Little is spent at the early looks (the first of 3..10 seeds spends 0.0001),
  so a difference resolved early must be large, and the last look keeps a level close to alpha.
- The boundaries c_k are those of the normal (known variance) case, computed by the usual recursive
  numerical integration over the score statistic's continuation region (Armitage, McPherson and Rowe
  1969; Jennison and Turnbull 2000, Group Sequential Methods with Applications to Clinical Trials,
  Chapman & Hall/CRC). With the variance unknown they are carried over on the significance-level
  scale, as Jennison and Turnbull describe for t-tests: look k resolves the pair when the paired
  t-test over its first n_k seeds has p < alpha_k = f * 2 (1 - Phi(c_k)). Carried over alone (f = 1)
  the levels are slightly liberal at the few degrees of freedom of a seed benchmark (0.054 to 0.057
  instead of 0.05 with looks at 3..10 seeds, simulated), so one factor f, the same for every look, is
  fitted by simulating the design under no difference (`calibration`); the t-test's p-values under
  no difference do not depend on the unknown spread, so this holds the level for normal differences
  whatever their spread. tests/bench/reporting/test_sequential.py measures the rate on other draws.
- A pair's data at look k are its first n_k shared seeds in increasing order (the loop adds seeds
  above every seed run so far, so a look's data never change afterwards); the first look that
  resolves the pair decides it, whatever later seeds (added for other pairs) show.

Everything here is a pure function of the per-seed values and the design, so the tables rebuilt from
the records at any time give the verdict the loop acted on.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from scipy import optimize, stats

from bench.core.atomic import write_json_atomic
from bench.reporting import paired
from bench.reporting.intervals import LEVEL, MIN_SEEDS, SEEDS

PROCEDURE = "group-sequential paired t-test, Lan-DeMets O'Brien-Fleming-type alpha spending"
STATE_FILE = "until_resolved.json"  # OUT/until_resolved.json: the design and the seeds the loop added
GRID_POINTS = 801  # of the numerical integration; the 5-look boundaries agree with published ones to 1e-3
NEVER = 40.0  # a boundary where a look spends (next to) nothing: no z reaches it
CALIBRATION_SEQUENCES = 100_000  # simulated under no difference to fit the t-test levels (`calibration`)
CALIBRATION_SEED = 30


def spent(fraction: np.ndarray | float, alpha: float = 1 - LEVEL) -> np.ndarray:
    """The two-sided alpha spent by information fraction t (O'Brien-Fleming type, alpha/2 per side)."""
    t = np.asarray(fraction, dtype=np.float64)
    return 4 - 4 * stats.norm.cdf(stats.norm.isf(alpha / 4) / np.sqrt(t))


def _trapezoid_weights(grid: np.ndarray) -> np.ndarray:
    w = np.full(len(grid), grid[1] - grid[0])
    w[[0, -1]] /= 2
    return w


def _crossing(bound: float, mass: np.ndarray, grid: np.ndarray, root: float, step_sd: float) -> float:
    """The chance of first crossing +-bound at the next look: the continuation mass on `grid` (the
    score statistic at the previous look) times the chance that a normal step (sd `step_sd`) ends
    beyond +-bound * root (root: sqrt of the next look's information)."""
    return float(mass @ (stats.norm.cdf((-bound * root - grid) / step_sd) + stats.norm.sf((bound * root - grid) / step_sd)))


def boundaries(information: list[int] | np.ndarray, alpha: float = 1 - LEVEL,
               points: int = GRID_POINTS) -> np.ndarray:
    """Two-sided z boundaries c_k for looks at the given (increasing) information levels: under no
    difference, the chance of first crossing at look k is the alpha spent between looks k-1 and k.
    Integrates the density of the score statistic S_k (variance information_k, independent normal
    increments) over the region where no earlier look crossed."""
    info = np.asarray(information, dtype=np.float64)
    increments = np.diff(np.concatenate([[0.0], spent(info / info[-1], alpha)]))
    c = float(stats.norm.isf(increments[0] / 2)) if increments[0] > 0 else NEVER
    out = [c]
    grid = np.linspace(-c * math.sqrt(info[0]), c * math.sqrt(info[0]), points)
    density = stats.norm.pdf(grid, scale=math.sqrt(info[0]))
    for k in range(1, len(info)):
        step_sd, root = math.sqrt(info[k] - info[k - 1]), math.sqrt(info[k])
        mass = density * _trapezoid_weights(grid)
        crossing = functools.partial(_crossing, mass=mass, grid=grid, root=root, step_sd=step_sd)
        if increments[k] <= 1e-15 or crossing(NEVER) >= increments[k]:
            c = NEVER
        else:
            c = float(optimize.brentq(lambda b, f=crossing, target=increments[k]: f(b) - target, 1e-6, NEVER,
                                      xtol=1e-10))
        out.append(c)
        new_grid = np.linspace(-c * root, c * root, points)
        density = stats.norm.pdf((new_grid[:, None] - grid[None, :]) / step_sd) @ mass / step_sd
        grid = new_grid
    return np.array(out)


def _t_p_values(diffs: np.ndarray, n: int) -> np.ndarray:
    """Two-sided p of the paired t-test over the first n columns of each row (0 or 1 where every
    difference is the same, as paired.py)."""
    head = diffs[:, :n]
    mean, sd = head.mean(axis=1), head.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = 2 * stats.t.sf(np.abs(mean / (sd / math.sqrt(n))), n - 1)
    return np.where(sd == 0, np.where(mean != 0, 0.0, 1.0), p)


def calibration(looks: tuple[int, ...], levels: tuple[float, ...], alpha: float) -> float:
    """The factor f for which "p_k < f * level_k at some look" has probability alpha when the
    differences are normal with mean 0: the alpha-quantile of min_k p_k / level_k over simulated
    sequences (fixed seed, so every build gets the same levels). The t-test's p-values do not depend
    on the unknown spread under no difference, so one simulation serves every pair."""
    n_max = looks[-1]
    count = max(20_000, min(CALIBRATION_SEQUENCES, 20_000_000 // n_max))
    diffs = np.random.default_rng(CALIBRATION_SEED).standard_normal((count, n_max))
    ratio = np.full(count, np.inf)
    for n, level in zip(looks, levels):
        ratio = np.minimum(ratio, _t_p_values(diffs, n) / level)
    return float(np.quantile(ratio, alpha))


@functools.lru_cache(maxsize=32)
def _nominal_levels(looks: tuple[int, ...], alpha: float) -> tuple[float, ...]:
    """The normal boundaries' levels, scaled by the t-test calibration. Cached: every table build and
    every look of the loop asks for the same design's levels."""
    levels = tuple(float(a) for a in 2 * stats.norm.sf(boundaries(list(looks), alpha)))
    factor = calibration(looks, levels, alpha)
    return tuple(factor * a for a in levels)


@dataclass(frozen=True)
class Design:
    first: int  # seeds at the first look (>= MIN_SEEDS: the fewest the paired t-test is run on)
    max_seeds: int  # seeds at the last look
    step: int = 1  # seeds added between looks
    alpha: float = round(1 - LEVEL, 12)  # 0.05, not 0.050000000000000044 in the state file

    def __post_init__(self) -> None:
        if self.first < MIN_SEEDS or self.max_seeds < self.first or self.step < 1:
            raise ValueError(f"a sequential design needs {MIN_SEEDS} <= first <= max_seeds and step >= 1, "
                             f"not first={self.first}, max_seeds={self.max_seeds}, step={self.step}")

    @cached_property
    def looks(self) -> list[int]:
        """The seed counts of the looks; the last is always max_seeds."""
        ns = list(range(self.first, self.max_seeds + 1, self.step))
        return ns if ns[-1] == self.max_seeds else ns + [self.max_seeds]

    @cached_property
    def nominal(self) -> np.ndarray:
        """alpha_k: look k resolves a pair when its paired t-test has p below this."""
        return np.array(_nominal_levels(tuple(self.looks), self.alpha))

    def look_at(self, seeds: int) -> int:
        """How many looks `seeds` shared seeds allow (0: fewer than the first look)."""
        return sum(1 for n in self.looks if n <= seeds)

    def next_look(self, seeds: int) -> int | None:
        """The seed count of the first look after `seeds` seeds; None when the budget is spent."""
        return next((n for n in self.looks if n > seeds), None)

    def describe(self) -> str:
        looks = ", ".join(map(str, self.looks))
        return (f"{PROCEDURE} (two-sided {self.alpha:g}; looks at {looks} seeds: {len(self.looks)} at most; "
                f"nominal levels {', '.join(f'{a:.2g}' for a in self.nominal)})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def first_crossing(diffs: np.ndarray, design: Design) -> tuple[np.ndarray, np.ndarray]:
    """Paired differences (S, N) of S pairs (columns in seed order; N >= the looks used): per pair,
    the index of the look that resolved it (-1: none of the looks its N seeds allow) and the p-value
    of the paired t-test at the deciding look (the resolving look, else the last one made).
    Vectorised, so the simulation tests run the code the tables run."""
    x = np.asarray(diffs, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    s = len(x)
    resolved_at = np.full(s, -1)
    p_at = np.full(s, np.nan)
    for k, (n, level) in enumerate(zip(design.looks, design.nominal)):
        if n > x.shape[1]:
            break
        p = _t_p_values(x, n)
        open_ = resolved_at < 0
        p_at = np.where(open_, p, p_at)
        resolved_at = np.where(open_ & (p < level), k, resolved_at)
    return resolved_at, p_at


def compare(best: dict[int, float], other: dict[int, float], design: Design,
            order: list[int] | None = None) -> paired.Comparison:
    """The sequential verdict on two rows' per-seed values {seed: value}: resolved at the first look
    whose nominal level its paired t-test passes. Looks take the shared seeds in `order` (the loop's
    seed order; default increasing), others are left out. With fewer shared seeds than the first
    look, the fixed paired test at the first look's (smaller) level."""
    shared = {s for s in set(best) & set(other) if np.isfinite(best[s]) and np.isfinite(other[s])}
    common = [s for s in order if s in shared] if order is not None else sorted(shared)
    if len(common) < design.first:
        return paired.across_seeds(best, other, alpha=float(design.nominal[0]))
    d = np.array([other[s] - best[s] for s in common])
    at, p = first_crossing(d, design)
    made = design.look_at(len(common))
    look = int(at[0]) + 1 if at[0] >= 0 else made
    n = design.looks[look - 1]
    diff = float(d[:n].mean())
    how = f"look {look} of {len(design.looks)} at {n} seeds, p = {float(p[0]):.2g} against {design.nominal[look - 1]:.2g}"
    return paired.Comparison(SEEDS, bool(at[0] >= 0), diff, p=float(p[0]), n=n,
                             test=f"{PROCEDURE} ({how})", look=look, max_looks=len(design.looks))


@dataclass
class State:
    """What OUT/until_resolved.json holds: the design, the comparisons it applies to, the seeds in
    look order and every batch the loop added."""

    design: Design
    metrics: list[str]  # metric keys the loop resolves
    cells: list[list[Any]]  # [dataset, method, codebook size] of the rows it applies to
    seed_order: list[int]  # seeds in the order looks take them
    batches: list[dict[str, Any]] = field(default_factory=list)  # {"look_seeds", "seeds", "runs"} per batch
    outcome: str = ""  # the loop's last line

    def covers(self, dataset: Any, method: Any, codebook_size: Any, metric: str) -> bool:
        key = [str(dataset), str(method), _int_or_none(codebook_size)]
        return metric in self.metrics and key in [[str(d), str(m), _int_or_none(k)] for d, m, k in self.cells]

    def to_dict(self) -> dict[str, Any]:
        return {"procedure": self.design.describe(), "design": self.design.to_dict(), "metrics": self.metrics,
                "cells": self.cells, "seed_order": self.seed_order, "batches": self.batches,
                "outcome": self.outcome}

    def save(self, out: Path | str) -> Path:
        path = Path(out) / STATE_FILE
        write_json_atomic(path, self.to_dict())
        return path


def _int_or_none(v: Any) -> int | None:
    try:
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else int(v)
    except (TypeError, ValueError):
        return None


def load(out: Path | str) -> State | None:
    """The loop's state under `out`; None when no --until-resolved ran there (or the file is unreadable:
    the tables then use the fixed test, as before any loop)."""
    import json

    path = Path(out) / STATE_FILE
    try:
        raw = json.loads(path.read_text())
        design = Design(**raw["design"])
        return State(design, list(raw["metrics"]), [list(c) for c in raw["cells"]], list(raw["seed_order"]),
                     list(raw.get("batches") or []), str(raw.get("outcome") or ""))
    except (OSError, ValueError, KeyError, TypeError):
        return None
