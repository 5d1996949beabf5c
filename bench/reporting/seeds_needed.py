"""How many seeds would resolve a difference of the size observed: for an unresolved comparison of two
rows, the smallest number of seeds at which the table's paired t-test (two-sided, at 1 - LEVEL) has
POWER to resolve a true difference equal to the mean of the observed paired differences, given their
observed spread across seeds.

Why the paired differences and not the two rows' spreads: the table's test is paired over seeds (the
same seed gives both methods the same data order), so what decides it is the spread of the
differences, which is smaller than either row's spread whenever the seeds move both rows together.

Why noncentral t and not the normal approximation (n = ((z_a + z_b) sd / diff)^2): at the handful of
seeds a training benchmark affords, the t-test's critical value at n - 1 degrees of freedom is much
larger than z (4.30 at 3 seeds against 1.96), and the normal formula would promise resolution seeds
too early. The power of the paired t-test at n pairs for a standardised effect d is the probability
that a noncentral t with n - 1 degrees of freedom and noncentrality d sqrt(n) falls outside the
two-sided critical values; this is the textbook calculation, exact for normal differences.

It is an estimate: the observed effect from three seeds is itself noisy, so "about N" is said, never
a guarantee (docs/results.md works the numbers of an example through).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from bench.evaluation.metrics import keys
from bench.reporting.intervals import LEVEL, MIN_SEEDS

POWER = 0.8
MOST = 1000  # above this the estimate is reported as "more than MOST": no benchmark would run them
# What the differences are counted in, where the shown value has a unit (usage is shown in percent).
UNITS = {keys.PSNR: " dB", keys.UTILIZATION: " points"}


@dataclass(frozen=True)
class SeedsNeeded:
    seeds: int | None  # None: no estimate (see `reason`) or more than MOST
    diff: float = math.nan  # mean paired difference (other - best), in shown units
    sd: float = math.nan  # sample std of the paired differences across seeds
    n: int = 0  # seeds both rows share (the differences the estimate came from)
    reason: str = ""  # why there is no number, in words; "" when there is one

    @property
    def above_most(self) -> bool:
        return self.seeds is None and not self.reason


def power(n: np.ndarray | int, effect: float, alpha: float = 1 - LEVEL) -> np.ndarray:
    """Power of the two-sided paired t-test at `n` pairs (n >= 2) for the standardised effect
    mean / sd of the differences."""
    n = np.asarray(n, dtype=np.float64)
    df = n - 1
    crit = stats.t.isf(alpha / 2, df)
    nc = abs(effect) * np.sqrt(n)
    return stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc)


def seeds_for(effect: float, alpha: float = 1 - LEVEL, target: float = POWER, most: int = MOST) -> int | None:
    """The smallest number of seeds (at least MIN_SEEDS, the fewest the table tests across seeds) at
    which the paired t-test has `target` power for `effect`; None when more than `most` are needed."""
    if not np.isfinite(effect) or effect == 0:
        return None
    n = np.arange(MIN_SEEDS, most + 1)
    enough = np.nonzero(power(n, effect, alpha) >= target)[0]
    return int(n[enough[0]]) if len(enough) else None


def estimate(best: dict[int, float], other: dict[int, float], alpha: float = 1 - LEVEL) -> SeedsNeeded:
    """The seeds-needed estimate from two rows' per-seed values {seed: value}, over the seeds they share."""
    common = sorted(s for s in set(best) & set(other) if np.isfinite(best[s]) and np.isfinite(other[s]))
    if len(common) < 2:
        return SeedsNeeded(None, n=len(common), reason="with one seed the variance across training runs "
                                                         "cannot be estimated yet")
    d = np.array([other[s] - best[s] for s in common], dtype=np.float64)
    diff, sd = float(d.mean()), float(d.std(ddof=1))
    if diff == 0:
        return SeedsNeeded(None, diff, sd, len(common), reason="no difference observed")
    if sd == 0:  # every seed differs by the same amount: the t-test resolves it at MIN_SEEDS seeds
        return SeedsNeeded(max(MIN_SEEDS, len(common)), diff, sd, len(common))
    return SeedsNeeded(seeds_for(diff / sd, alpha), diff, sd, len(common))


def difference_text(diff: float, metric: str, decimals: int) -> str:
    """`1.50 dB`: the size of a difference in the metric's shown units."""
    return f"{abs(diff):.{decimals}f}{UNITS.get(metric, '')}"


def phrase(needed: SeedsNeeded, metric: str, decimals: int) -> str:
    """`about 6 seeds would resolve a difference of 1.50 dB` (or why there is no number)."""
    if needed.reason:
        return needed.reason
    size = difference_text(needed.diff, metric, decimals)
    if needed.seeds is None:
        return f"more than {MOST} seeds would be needed to resolve a difference of {size}"
    return f"about {needed.seeds} seeds would resolve a difference of {size}"
