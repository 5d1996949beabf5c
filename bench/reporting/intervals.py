"""95% intervals of a table cell: across seeds (a t-interval, when a cell has at least MIN_SEEDS
finished seeds) or, with fewer, a bootstrap over the images of the run(s).

Why two kinds: the spread over seeds contains everything that changes from one training run to the
next (initialisation, batch order, the machine's arithmetic); an image bootstrap contains only which
validation images happened to be drawn. With one or two seeds the first cannot be estimated, so the
second is what the table can give, and it is labelled as such: it says how well the trained
model(s) were measured, not how well the method was.

The bootstrap is deterministic: the resampled index sets depend only on the number of images and
of resamples (a fixed seed), so every machine and every table build gets the same intervals, and
all rows of a column share the index sets (which makes paired differences free, see paired.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95
MIN_SEEDS = 3  # fewer finished seeds than this: an image bootstrap instead of a t-interval
IMAGE_RESAMPLES = 2000  # per-image metrics: a resample costs one mean
FEATURE_RESAMPLES = 200  # rFID / KID: a resample costs an n x n SVD (feature_bootstrap.py)
BOOTSTRAP_SEED = 15  # fixed: intervals must not change between builds or machines
SEEDS, IMAGES = "seeds", "images"  # the kinds of interval


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    kind: str  # SEEDS (t over seeds) or IMAGES (bootstrap over images)
    n: int  # seeds for SEEDS, images for IMAGES

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def t_interval(values: np.ndarray | list[float], level: float = LEVEL) -> Interval | None:
    """mean ± t_{(1+level)/2, n-1} s / sqrt(n) over per-seed values; None below 2 finite values."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return None
    half = float(stats.t.ppf((1 + level) / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    m = float(v.mean())
    return Interval(m - half, m + half, SEEDS, len(v))


def resample_indices(n_images: int, n_resamples: int) -> np.ndarray:
    """(n_resamples, n_images) indices drawn with replacement, the same for equal arguments."""
    rng = np.random.default_rng([BOOTSTRAP_SEED, n_images, n_resamples])
    return rng.integers(0, n_images, size=(n_resamples, n_images))


def mean_replicates(values: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """The mean of `values` (N,) on each resample of `indices` (B, N)."""
    return np.asarray(values, dtype=np.float64)[indices].mean(axis=1)


def shifted_percentiles(estimate: float, replicates: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval of bootstrap replicates, moved so that their mean sits on `estimate`.

    For a mean the shift is negligible. For rFID and KID it is not: a resample repeats about a third
    of the images, which by itself changes a set statistic (fewer distinct feature vectors), so the
    raw percentiles would sit beside the estimate rather than around it. Moving them keeps the width
    the resampling measured and centres it where the estimate is."""
    r = np.asarray(replicates, dtype=np.float64)
    r = r[np.isfinite(r)]
    if len(r) < 2:
        return math.nan, math.nan
    lo, hi = np.quantile(r, [(1 - level) / 2, (1 + level) / 2])
    shift = estimate - float(r.mean())
    return float(lo + shift), float(hi + shift)


def bootstrap_interval(estimate: float, replicates: np.ndarray, n_images: int) -> Interval | None:
    lo, hi = shifted_percentiles(estimate, replicates)
    return None if math.isnan(lo) else Interval(lo, hi, IMAGES, n_images)
