"""rFID and KID on resamples of the images, from the stored features, without a 2048 x 2048
eigendecomposition per resample.

A resample keeps image i's original and reconstruction together (the same index for both sets),
as the evaluation paired them. With both feature sets as rows (n x d, n images), everything rFID
and KID need of a resample is in three n x n Gram matrices computed once:

- ||mu_1 - mu_2||^2 is the mean over resampled pairs (i, j) of (f1_i - f2_i).(f1_j - f2_j);
- tr(S) is the trace of the doubly centred resampled Gram matrix over (n - 1);
- tr((S1 S2)^1/2): S1 S2 has the nonzero eigenvalues of (A B^T)(A B^T)^T with A, B the centred
  resampled rows over sqrt(n - 1), so the trace is the sum of singular values of A B^T, an n x n
  matrix taken from the cross Gram matrix. Equal to fid.frechet_distance on the resampled rows.
- KID's cubic kernel (x.y / d + 1)^3 is a function of the same dot products; the unbiased MMD^2 of
  a resample leaves out pairs of the same image (a resample repeats images).

For n above MAX_IMAGES the n x n matrices cost more than the 2048 x 2048 route and are not built:
the caller gets None and says the interval was not computed.
"""
from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

MAX_IMAGES = 4096
KID_DEGREE, KID_COEF0 = 3, 1.0  # bench.evaluation.metrics.fid's kernel


def _centred(g: np.ndarray) -> np.ndarray:
    return g - g.mean(axis=0, keepdims=True) - g.mean(axis=1, keepdims=True) + g.mean()


class FeatureResampler:
    """rFID and KID of resamples of one run (reconstructions vs their originals)."""

    def __init__(self, recons: np.ndarray, originals: np.ndarray) -> None:
        r, o = np.asarray(recons, np.float64), np.asarray(originals, np.float64)
        if r.shape != o.shape or r.ndim != 2:
            raise ValueError(f"feature sets differ: {r.shape} vs {o.shape}")
        self.n, self.d = r.shape
        self.g_oo, self.g_rr, self.g_ro = o @ o.T, r @ r.T, r @ o.T
        diff = o - r
        self.g_diff = diff @ diff.T

    def fid(self, idx: np.ndarray) -> float:
        n = len(idx)
        sub = np.ix_(idx, idx)
        mean_term = float(self.g_diff[sub].mean())
        tr_o = float(np.trace(_centred(self.g_oo[sub]))) / (n - 1)
        tr_r = float(np.trace(_centred(self.g_rr[sub]))) / (n - 1)
        c = _centred(self.g_ro[sub]) / (n - 1)
        with threadpool_limits(limits=1, user_api="blas"):  # see fid.frechet_distance: faster on shared cores
            eig = np.linalg.eigvalsh(c @ c.T)  # singular values of c are the roots (eigvalsh beats svd 1.7x)
        return mean_term + tr_o + tr_r - 2.0 * float(np.sqrt(np.clip(eig, 0.0, None)).sum())

    def kid(self, idx: np.ndarray) -> float:
        sub = np.ix_(idx, idx)
        k = lambda g: (g[sub] / self.d + KID_COEF0) ** KID_DEGREE
        distinct = idx[:, None] != idx[None, :]  # pairs of two different images
        m = float(distinct.sum())
        return float(k(self.g_oo)[distinct].sum() / m + k(self.g_rr)[distinct].sum() / m
                     - 2.0 * k(self.g_ro).mean())

    def replicates(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """{"fid": (B,), "kid": (B,)} over the rows of `indices` (B, n)."""
        return {"fid": np.array([self.fid(i) for i in indices]), "kid": np.array([self.kid(i) for i in indices])}


def replicates(recons: np.ndarray | None, originals: np.ndarray | None,
               indices: np.ndarray) -> dict[str, np.ndarray] | None:
    """rFID and KID on each resample, or None without features or above MAX_IMAGES."""
    if recons is None or originals is None or len(recons) > MAX_IMAGES or len(recons) < 3:
        return None
    return FeatureResampler(recons, originals).replicates(indices)
