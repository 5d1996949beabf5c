"""FID-infinity: the effectively unbiased FID of Chong & Forsyth ("Effectively Unbiased FID and
Inception Score and where to find them", CVPR 2020).

FID computed from N images is biased upwards, and the bias falls like 1/N: E[FID_N] = FID_inf + k/N
to first order. So FID is taken on subsamples of several sizes N drawn from the stored features, a
straight line in 1/N is fitted by least squares, and its intercept (1/N = 0) is FID-infinity, the FID
of infinitely many images: the number comparable across image counts.

Choices, and why:
- POINTS = 15 subsample sizes, evenly spaced in N from MIN_FRACTION = a tenth of the set to all of it,
  one subsample each: Chong & Forsyth's defaults (they ran 5,000 to 50,000 images). On Gaussian
  features in 16 dimensions, 252 images, 100 draws (tests/bench/evaluation/test_fid_infinity.py): true
  distance 0.523, FID_252 0.637 on average, FID-infinity 0.514 (sd 0.051 over draws), its interval
  covering the truth 94 times; with a fifth of the set as the smallest size, 0.517 (sd 0.054), 91 times.
- The 1/N line holds while N is well above the feature dimension. Below it (the default benchmark:
  252 images of 2048-d Inception features) FID_N bends, and the intercept removes only part of the
  bias: on 2048-d Gaussian features with a true distance of 28.5, FID_252 was 483 and FID-infinity
  from those 252 images 481 (FID_1000 388, FID-infinity from 1000 images 385). Tables therefore
  dagger an FID-infinity whose smallest subsample has fewer than 2048 images.
- Reconstruction (rFID-infinity, `paired`): a subsample keeps image i's original and reconstruction
  together and BOTH sides are subsampled, because the originals' statistics come from the same N
  images and their estimate is biased in the same 1/N way; the intercept extrapolates both.
- Generation (gFID-infinity, `against_reference`): the reference statistics (the training split) stay
  fixed and only the generated samples are subsampled, as Chong & Forsyth do; the reference's own
  finite-sample bias is not removed (it is small when the reference is large).
- The subsamples are drawn with a fixed seed per set size, so every machine gets the same number.

How FID of a subsample is computed: with fewer images than feature dimensions (and no more than
feature_bootstrap.MAX_IMAGES), from n x n Gram matrices (bench.reporting.feature_bootstrap: exact, and
one eigendecomposition of at most n x n per subsample instead of two of 2048 x 2048); otherwise from
the subsample's own statistics (fid.frechet_distance's arithmetic, `frechet`).

Nothing here imports torch.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

POINTS = 15  # subsample sizes (Chong & Forsyth: 15)
MIN_FRACTION = 0.1  # the smallest subsample, as a fraction of the set (Chong & Forsyth: 5,000 of 50,000)
MIN_SUBSAMPLE = 3  # FID needs at least 2 images per side; 3 keeps the Gram route's n - 1 > 1
SEED = 2020  # the subsamples' seed, with the set size
REFERENCE = "Chong & Forsyth, Effectively Unbiased FID and Inception Score and where to find them, CVPR 2020"


@dataclass(frozen=True)
class Estimate:
    """FID-infinity (the fit's intercept), the slope k of FID_N = FID_inf + k / N, and the points."""

    value: float
    slope: float
    sizes: tuple[int, ...]
    fids: tuple[float, ...] = field(repr=False)

    def describe(self) -> dict[str, Any]:
        return {"method": "least-squares line of FID_N against 1/N, intercept at 1/N = 0", "reference": REFERENCE,
                "points": len(self.sizes), "sizes": [int(s) for s in self.sizes], "slope": self.slope,
                "subsamples": f"one per size, without replacement, seed ({SEED}, n)"}


def smallest_size(n: int) -> int:
    """The smallest subsample of a set of n images (the epsilon: 0.1 * 20470 is 2047.0000000000002)."""
    return max(MIN_SUBSAMPLE, int(math.ceil(MIN_FRACTION * n - 1e-9)))


def images_for_smallest(size: int) -> int:
    """The fewest images whose smallest subsample has at least `size` images."""
    n = max(1, int((size - 1) / MIN_FRACTION))
    while smallest_size(n) >= size and n > 1:
        n -= 1
    while smallest_size(n) < size:
        n += 1
    return n


def sizes(n: int) -> np.ndarray:
    """The subsample sizes for a set of n images: POINTS sizes evenly spaced from MIN_FRACTION * n to n
    (fewer when the set is too small for POINTS distinct sizes)."""
    if n < MIN_SUBSAMPLE + 1:
        raise ValueError(f"FID-infinity needs at least {MIN_SUBSAMPLE + 1} images, got {n}")
    return np.unique(np.linspace(smallest_size(n), n, POINTS).round().astype(np.int64))


def subsamples(n: int) -> list[np.ndarray]:
    """Positions 0..n-1 of each size's subsample (without replacement), the same for equal n."""
    rng = np.random.default_rng([SEED, n])
    return [np.sort(rng.permutation(n)[:size]) for size in sizes(n)]


def fit(sizes_: np.ndarray | list[int], fids: np.ndarray | list[float]) -> tuple[float, float]:
    """(intercept, slope) of the least-squares line fid = intercept + slope / N."""
    x = 1.0 / np.asarray(sizes_, dtype=np.float64)
    slope, intercept = np.polyfit(x, np.asarray(fids, dtype=np.float64), 1)
    return float(intercept), float(slope)


def estimate(fid_of: Callable[[np.ndarray], float], n: int) -> Estimate:
    """FID-infinity of a set of n images, given `fid_of(positions)`: the FID of the rows at those
    positions (0..n-1)."""
    plan = subsamples(n)
    fids = [float(fid_of(p)) for p in plan]
    got = [len(p) for p in plan]
    value, slope = fit(got, fids)
    return Estimate(value, slope, tuple(got), tuple(fids))


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((sigma + sigma.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
            root1: np.ndarray | None = None) -> float:
    """fid.frechet_distance's arithmetic (the same trace term, equal to 1e-12 in the tests) without
    entering threadpool_limits on every call: the callers here hold one limit around all their FIDs,
    and entering it costs about 10 ms, more than a small FD. `root1`: sigma1^1/2 when it is fixed."""
    root1 = _psd_sqrt(sigma1) if root1 is None else root1
    middle = root1 @ sigma2 @ root1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * float(np.sqrt(np.clip(eig, 0.0, None)).sum()))


def _direct_fid(a: np.ndarray, b: np.ndarray) -> float:
    return frechet(a.mean(axis=0), np.cov(a, rowvar=False), b.mean(axis=0), np.cov(b, rowvar=False))


def paired_fid_of(recons: np.ndarray, originals: np.ndarray) -> Callable[[np.ndarray], float]:
    """fid_of(rows) for reconstructions against their originals, both sides on the same rows (which may
    repeat: a bootstrap resample's rows)."""
    from bench.reporting import feature_bootstrap

    r, o = np.asarray(recons), np.asarray(originals)
    if r.shape != o.shape or r.ndim != 2:
        raise ValueError(f"feature sets differ: {r.shape} vs {o.shape}")
    n, d = r.shape
    if n <= feature_bootstrap.MAX_IMAGES and n < d:
        return feature_bootstrap.FeatureResampler(r, o).fid
    return lambda rows: _direct_fid(o[rows].astype(np.float64), r[rows].astype(np.float64))


def generated_fid_of(generated: np.ndarray, ref_mu: np.ndarray, ref_sigma: np.ndarray,
                     ref_features: np.ndarray | None = None) -> Callable[[np.ndarray], float]:
    """fid_of(rows) for generated samples (those rows) against fixed reference statistics."""
    from bench.reporting import feature_bootstrap

    g = np.asarray(generated)
    mu, sigma = np.asarray(ref_mu, np.float64), np.asarray(ref_sigma, np.float64)
    if len(g) <= feature_bootstrap.MAX_IMAGES and len(g) < g.shape[1]:
        # The Gram route needs the reference's mu and sigma only (its features serve KID).
        res = feature_bootstrap.GeneratedResampler(g, mu, sigma, ref_features)
        return res.fid
    root = _psd_sqrt(sigma)

    def fid_of(rows: np.ndarray) -> float:
        sub = g[rows].astype(np.float64)
        return frechet(mu, sigma, sub.mean(axis=0), np.cov(sub, rowvar=False), root)
    return fid_of


def paired(recons: np.ndarray, originals: np.ndarray) -> Estimate:
    """rFID-infinity of reconstructions against their originals (features in image order)."""
    fid_of = paired_fid_of(recons, originals)
    with threadpool_limits(limits=1, user_api="blas"):  # as fid.frechet_distance: faster on shared cores
        return estimate(fid_of, len(recons))


def against_reference(generated: np.ndarray, ref_mu: np.ndarray, ref_sigma: np.ndarray,
                      ref_features: np.ndarray | None = None) -> Estimate:
    """gFID-infinity of generated samples against fixed reference statistics."""
    fid_of = generated_fid_of(generated, ref_mu, ref_sigma, ref_features)
    with threadpool_limits(limits=1, user_api="blas"):
        return estimate(fid_of, len(generated))


def replicates(fid_of: Callable[[np.ndarray], float], indices: np.ndarray) -> np.ndarray:
    """FID-infinity of each bootstrap resample (rows of `indices`, (B, n)): the same estimator, its
    subsamples taken from the resample's rows, so the interval includes the subsampling's own noise."""
    n = indices.shape[1]
    plan = subsamples(n)
    got = [len(p) for p in plan]
    out = np.empty(len(indices))
    with threadpool_limits(limits=1, user_api="blas"):
        for b, rows in enumerate(indices):
            out[b] = fit(got, [fid_of(rows[p]) for p in plan])[0]
    return out
