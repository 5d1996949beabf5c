"""rFID and KID on resamples of the images (and gFID and KID on resamples of a prior's generated
samples), from the stored features, without a 2048 x 2048
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

Generated samples (gFID, KID of a prior, `GeneratedResampler`) are resampled against a FIXED
reference: the training split's statistics are what every prior is scored against, so only the
generated set varies. With G the generated rows (n x d) and (mu_r, S_r) the reference statistics:

- ||mu_r - mu_g||^2 = ||mu_r||^2 - 2 mean_i g_i.mu_r + mean_ij g_i.g_j over the resample;
- tr(S_g) from the doubly centred resampled Gram matrix, as above;
- tr((S_r S_g)^1/2): S_r S_g has the nonzero eigenvalues of A S_r A^T (A the centred resampled rows
  over sqrt(n - 1)): a centred, count-weighted block of the n x n matrix G S_r G^T over (n - 1), one
  symmetric eigendecomposition per resample of the size of its distinct samples (about 0.63 n).
  Equal to fid.frechet_distance(mu_r, S_r, mu_g, S_g) of the resampled rows.
- KID: the reference-reference kernel mean is one constant; the cross term is the mean over the
  resample of each sample's mean kernel value against the reference; the generated-generated term
  leaves out pairs of the same sample.

For n above MAX_IMAGES the n x n matrices cost more than the 2048 x 2048 route and are not built:
the caller gets None and says the interval was not computed.
"""
from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from bench.reporting import intervals

MAX_IMAGES = 4096
KID_DEGREE, KID_COEF0 = 3, 1.0  # bench.evaluation.metrics.fid's kernel


def _kernel(g: np.ndarray, d: int) -> np.ndarray:
    return (g / d + KID_COEF0) ** KID_DEGREE


def _sum_sqrt_eig(c: np.ndarray) -> float:
    """The sum of the square roots of a symmetric PSD matrix's eigenvalues: the trace of its root."""
    eig = np.linalg.eigvalsh((c + c.T) / 2)
    return float(np.sqrt(np.clip(eig, 0.0, None)).sum())


def _counts(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of a resample and how often each is drawn (float64): a resample repeats about
    a third of the rows, and working on the distinct ones makes each eigendecomposition ~4x cheaper."""
    u, w = np.unique(idx, return_counts=True)
    return u, w.astype(np.float64)


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
        # One BLAS thread (see fid.frechet_distance: faster on shared cores), set once around all the
        # resamples: entering the limit costs milliseconds, more than a small eigendecomposition.
        with threadpool_limits(limits=1, user_api="blas"):
            return {"fid": np.array([self.fid(i) for i in indices]), "kid": np.array([self.kid(i) for i in indices])}


class GeneratedResampler:
    """gFID and KID of resamples of generated samples against a fixed reference (module docstring)."""

    def __init__(self, generated: np.ndarray, ref_mu: np.ndarray, ref_sigma: np.ndarray,
                 ref_features: np.ndarray | None, block: int = 512) -> None:
        g = np.asarray(generated, np.float64)
        mu, sigma = np.asarray(ref_mu, np.float64), np.asarray(ref_sigma, np.float64)
        # Without the reference's features (statistics read from a file) only FID can be resampled.
        self.has_kid = ref_features is not None
        ref = np.asarray(ref_features if ref_features is not None else np.zeros((2, len(mu))), np.float64)
        if g.ndim != 2 or mu.shape != (g.shape[1],) or sigma.shape != (g.shape[1],) * 2 or ref.shape[1:] != mu.shape:
            raise ValueError(f"feature sets differ: generated {g.shape}, reference mu {mu.shape}, sigma {sigma.shape}, "
                             f"features {ref.shape}")
        if len(ref) < 2:
            raise ValueError(f"KID needs at least 2 reference feature vectors, got {len(ref)}")
        self.n, self.d = g.shape
        self.gram, self.g_mu = g @ g.T, g @ mu
        self.gram_diag = np.diag(self.gram).copy()
        self.g_sigma_g = g @ sigma @ g.T
        self.ref_const = float(mu @ mu + np.trace(sigma))
        # Kernel means against the reference, in blocks of reference rows (the reference may be large).
        cross, rr = np.zeros(self.n), 0.0
        for i in range(0, len(ref) if self.has_kid else 0, block):
            part = ref[i : i + block]
            cross += _kernel(g @ part.T, self.d).sum(axis=1)
            k = _kernel(part @ ref.T, self.d)
            rr += float(k.sum()) - float(np.trace(k[:, i : i + len(part)]))
        m = len(ref)
        self.k_gr = cross / m  # each sample's mean kernel value against the reference
        self.k_rr = rr / (m * (m - 1))  # distinct reference pairs

    def fid(self, idx: np.ndarray) -> float:
        n = len(idx)
        u, w = _counts(idx)
        sub = np.ix_(u, u)
        gw = self.gram[sub] @ w
        mean_term = self.ref_const - 2.0 * float(w @ self.g_mu[u]) / n + float(w @ gw) / n**2
        tr_g = (float(w @ self.gram_diag[u]) - float(w @ gw) / n) / (n - 1)
        # A S_r A^T on the distinct samples: with r = sqrt(counts), X = diag(r) G S_r G^T diag(r) and the
        # projection Q = I - r r^T / n (r.r = n), the resample's matrix has the eigenvalues of Q X Q.
        r = np.sqrt(w)
        x = self.g_sigma_g[sub] * np.outer(r, r)
        xr = x @ r
        c = x - (np.outer(r, xr) + np.outer(xr, r)) / n + float(r @ xr) * np.outer(r, r) / n**2
        return mean_term + tr_g - 2.0 * _sum_sqrt_eig(c / (n - 1))

    def kid(self, idx: np.ndarray) -> float:
        if not self.has_kid:
            raise ValueError("KID needs the reference's features; this reference has only mu and sigma")
        n = len(idx)
        u, w = _counts(idx)
        k = _kernel(self.gram[np.ix_(u, u)], self.d)
        same = float((w * w) @ np.diag(k))  # pairs of one sample with itself (repeats included)
        k_gg = (float(w @ k @ w) - same) / (n * n - float(w @ w))
        return float(self.k_rr + k_gg - 2.0 * float(w @ self.k_gr[u]) / n)

    def replicates(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """{"fid": (B,), "kid": (B,)} over the rows of `indices` (B, n)."""
        # One BLAS thread (see fid.frechet_distance: faster on shared cores), set once: entering the
        # limit costs milliseconds, as much as a small eigendecomposition.
        with threadpool_limits(limits=1, user_api="blas"):
            return {"fid": np.array([self.fid(i) for i in indices]), "kid": np.array([self.kid(i) for i in indices])}


def generated_replicates(generated: np.ndarray | None, ref_mu: np.ndarray | None, ref_sigma: np.ndarray | None,
                         ref_features: np.ndarray | None, indices: np.ndarray) -> dict[str, np.ndarray] | None:
    """gFID and KID on each resample of the generated samples (reference fixed), or None without
    features or above MAX_IMAGES samples."""
    if generated is None or ref_mu is None or ref_sigma is None or ref_features is None:
        return None
    if len(generated) > MAX_IMAGES or len(generated) < 3:
        return None
    return GeneratedResampler(generated, ref_mu, ref_sigma, ref_features).replicates(indices)


def replicates(recons: np.ndarray | None, originals: np.ndarray | None,
               indices: np.ndarray | None = None) -> dict[str, np.ndarray] | None:
    """rFID and KID on each resample, or None without features or above MAX_IMAGES. `indices` (B, n):
    by default the tables' fixed resamples of n images (intervals.FEATURE_RESAMPLES, a fixed seed)."""
    if recons is None or originals is None or len(recons) > MAX_IMAGES or len(recons) < 3:
        return None
    if indices is None:
        indices = intervals.resample_indices(len(recons), intervals.FEATURE_RESAMPLES)
    return FeatureResampler(recons, originals).replicates(indices)
