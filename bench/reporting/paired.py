"""Paired comparisons of two table rows in one metric column: is the difference resolved?

- Across seeds (both rows with at least intervals.MIN_SEEDS finished seeds): a paired t-test over
  the seeds both rows have (the same seed gives both methods the same data order), or Welch's test
  when fewer than MIN_SEEDS seeds are shared. Resolved when p < 1 - LEVEL. This is the test of a
  METHOD difference: the spread over seeds holds run-to-run training variance.
- Over images (otherwise, when both rows have values on the same images): a paired bootstrap of the
  difference, using the same resampled index sets for both rows, so that image-to-image difficulty,
  which both rows share, cancels. Resolved when the 95% interval of the difference excludes 0. This
  resolves a difference between the TRAINED MODELS measured, not between methods: with one seed it
  says nothing about another training run (README: vqct 22.88 vs vqgan 21.88 PSNR on one machine,
  21.93 vs 22.58 on another, both one seed).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from bench.reporting.intervals import IMAGES, LEVEL, MIN_SEEDS, SEEDS, shifted_percentiles

UNTESTED = "untested"


@dataclass(frozen=True)
class Comparison:
    kind: str  # SEEDS, IMAGES or UNTESTED
    resolved: bool  # False when untested
    diff: float = math.nan  # other - best, in the column's shown units
    low: float = math.nan  # 95% interval of the difference (IMAGES)
    high: float = math.nan
    p: float = math.nan  # SEEDS
    n: int = 0  # seeds (SEEDS) or images (IMAGES) the test used
    test: str = ""  # what was tested, in words
    look: int = 0  # a group-sequential test (sequential.py): the look that decided it; 0 for a fixed test
    max_looks: int = 0  # and how many looks its design allows

    @property
    def tested(self) -> bool:
        return self.kind != UNTESTED


def across_seeds(best: dict[int, float], other: dict[int, float], alpha: float = 1 - LEVEL) -> Comparison:
    """Per-seed values {seed: value} of two rows; UNTESTED unless both have MIN_SEEDS finite values."""
    best = {s: v for s, v in best.items() if np.isfinite(v)}
    other = {s: v for s, v in other.items() if np.isfinite(v)}
    if len(best) < MIN_SEEDS or len(other) < MIN_SEEDS:
        return Comparison(UNTESTED, False, test=f"fewer than {MIN_SEEDS} seeds")
    common = sorted(set(best) & set(other))
    diff = float(np.mean(list(other.values())) - np.mean(list(best.values())))
    if len(common) >= MIN_SEEDS:
        a, b = np.array([other[s] for s in common]), np.array([best[s] for s in common])
        if np.allclose(a - b, (a - b)[0]):  # no spread of the differences: t is undefined
            p = 0.0 if abs((a - b)[0]) > 0 else 1.0
        else:
            p = float(stats.ttest_rel(a, b).pvalue)
        return Comparison(SEEDS, p < alpha, diff, p=p, n=len(common), test=f"paired t-test over {len(common)} seeds")
    p = float(stats.ttest_ind(list(other.values()), list(best.values()), equal_var=False).pvalue)
    n = min(len(best), len(other))
    return Comparison(SEEDS, bool(p < alpha), diff, p=p, n=n, test="Welch t-test over seeds (seeds not shared)")


def over_images(best_estimate: float, other_estimate: float, best_replicates: np.ndarray | None,
                other_replicates: np.ndarray | None, n_images: int) -> Comparison:
    """Paired bootstrap: replicates of both rows on the SAME resampled index sets."""
    if best_replicates is None or other_replicates is None or len(best_replicates) != len(other_replicates):
        return Comparison(UNTESTED, False, test="no per-image values or features on the same images")
    diff = other_estimate - best_estimate
    lo, hi = shifted_percentiles(diff, np.asarray(other_replicates) - np.asarray(best_replicates))
    if math.isnan(lo):
        return Comparison(UNTESTED, False, test="too few finite resamples")
    resolved = lo > 0 or hi < 0
    return Comparison(IMAGES, resolved, diff, lo, hi, n=n_images,
                      test=f"paired bootstrap over {n_images} images ({len(best_replicates)} resamples)")
