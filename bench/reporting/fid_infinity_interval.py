"""95% intervals of rFID-infinity and gFID-infinity (bench.evaluation.metrics.fid_infinity): the
tables' image bootstrap (bench.reporting.intervals: fixed resamples, shifted percentiles), each
replicate the whole estimator on the resample (15 subsample FIDs and the fit).

A replicate costs 15 FIDs where rFID's costs one, so FID-infinity takes the first RESAMPLES of the
tables' FEATURE_RESAMPLES index sets (the same fixed sets, fewer of them) and only sets of up to
MAX_IMAGES images: above that a replicate costs seconds (n x n eigendecompositions) and the cell has
no interval (the notes say why). The Gaussian tests (tests/bench/evaluation/test_fid_infinity.py)
measured the coverage of this interval with these settings.

Nothing here imports torch.
"""
from __future__ import annotations

import numpy as np

from bench.evaluation.metrics import fid_infinity
from bench.reporting import intervals

RESAMPLES = 50  # of intervals.FEATURE_RESAMPLES: the first ones, so the sets stay the tables' fixed ones
MAX_IMAGES = 1024
NO_INTERVAL = (f"FID-infinity's interval needs the stored features of at most {MAX_IMAGES} images (each "
               f"resample refits {fid_infinity.POINTS} subsample FIDs)")


def indices(n: int) -> np.ndarray:
    """The resamples FID-infinity's interval uses: the first RESAMPLES of the tables' fixed ones."""
    return intervals.resample_indices(n, intervals.FEATURE_RESAMPLES)[:RESAMPLES]


def paired_replicates(recons: np.ndarray | None, originals: np.ndarray | None) -> np.ndarray | None:
    """rFID-infinity of each resample of a run's images (reconstructions with their originals), or
    None without features or above MAX_IMAGES."""
    if recons is None or originals is None or len(recons) > MAX_IMAGES or len(recons) <= fid_infinity.MIN_SUBSAMPLE:
        return None
    return fid_infinity.replicates(fid_infinity.paired_fid_of(recons, originals), indices(len(recons)))


def generated_replicates(generated: np.ndarray | None, ref_mu: np.ndarray | None, ref_sigma: np.ndarray | None,
                         ref_features: np.ndarray | None) -> np.ndarray | None:
    """gFID-infinity of each resample of generated samples, the reference fixed; or None."""
    if generated is None or ref_mu is None or ref_sigma is None or len(generated) > MAX_IMAGES \
            or len(generated) <= fid_infinity.MIN_SUBSAMPLE:
        return None
    fid_of = fid_infinity.generated_fid_of(generated, ref_mu, ref_sigma, ref_features)
    return fid_infinity.replicates(fid_of, indices(len(generated)))


def interval(estimate: float, replicates: np.ndarray | None, n_images: int) -> intervals.Interval | None:
    return None if replicates is None else intervals.bootstrap_interval(estimate, replicates, n_images)
