"""Inception-v3 pool3 features (torch-fidelity's feature extractor), their statistics, the Frechet
distance and KID.

- Features: torch-fidelity's `inception-v3-compat`, layer "2048" (pool3), fed the uint8 images of the
  evaluator's boundary; it resizes them to 299x299 with its TensorFlow-1.x-compatible bilinear
  interpolation and scales (x - 128) / 128, as torch-fidelity does for every input. Weights: see
  `fid_weights` (torch-fidelity's own file when cached, else derived offline and verified). The
  network runs in the inference form of `fid_fused` (batch norms folded, ReLUs fused): the same
  features to float rounding, faster on the CPU.
- Statistics: mu and the unbiased covariance (np.cov, rowvar=False) in float64.
- Frechet distance: ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^1/2), with the trace term taken
  as the sum of square roots of the eigenvalues of S1^1/2 S2 S1^1/2, a symmetric PSD matrix, so it is
  real and stable even when the covariances are rank-deficient (fewer than 2049 images). Equal to
  pytorch-fid's `calculate_frechet_distance` (scipy sqrtm) where that converges.
- KID: torch-fidelity's unbiased MMD^2 estimator with its subset sampling.

The reference statistics cache is in `fid_reference`, the streaming computation of rFID and KID
during an evaluation (and their registry entries) in `fid_stream`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import Tensor, nn

from bench.evaluation.metrics import fid_fused, fid_weights
from bench.evaluation.precision import evaluation_precision

FEATURE_EXTRACTOR = "inception-v3-compat"  # torch-fidelity's name for the TF-compatible FID Inception
FEATURE_LAYER = "2048"  # pool3
FEATURE_DIM = 2048
INPUT_SIZE = 299
BATCH_SIZE = 64  # torch-fidelity's default; the features do not depend on it (see the tests)
MIN_FULL_RANK = FEATURE_DIM + 1  # fewer images give a rank-deficient covariance: mark such FIDs in tables
KID_SUBSETS = 100  # torch-fidelity's defaults: 100 subsets of 1000, cubic polynomial kernel, seed 2020
KID_SUBSET_SIZE = 1000
KID_DEGREE, KID_COEF0 = 3, 1.0
KID_SEED = 2020
KID_FULL_KERNEL_MAX = 4096  # up to this many images per set, kernels are computed once and subsets indexed


@dataclass
class Extractor:
    """The loaded feature extractor and what it is, for the protocol record."""

    model: nn.Module
    weights: fid_weights.InceptionWeights
    device: torch.device
    fused: str | None = None  # fid_fused.TAG when `model` is the fused inference form

    @property
    def name(self) -> str:
        return f"{FEATURE_EXTRACTOR}/{FEATURE_LAYER}"

    @property
    def key(self) -> str:
        """Identifies the features for the reference cache: network, layer, weights source, and the
        fused form's version (its features differ from the unfused network's by float rounding)."""
        return f"{FEATURE_EXTRACTOR}-{FEATURE_LAYER}-{self.weights.source}" + (f"-{self.fused}" if self.fused else "")

    def describe(self) -> dict[str, Any]:
        return {"feature_extractor": f"torch-fidelity {FEATURE_EXTRACTOR}, pool3 ({FEATURE_DIM}-d), 2015-12-05 FID weights",
                "weights": self.weights.source, "weights_file": self.weights.path.name,
                "weights_detail": self.weights.detail,
                "resize": f"torch-fidelity TF1.x-compatible bilinear to {INPUT_SIZE}x{INPUT_SIZE} from uint8, "
                          "then (x-128)/128",
                "inference": (f"batch norms folded into the convolutions, ReLUs fused ({self.fused})" if self.fused
                              else "as torch-fidelity")}


_EXTRACTORS: dict[str, Extractor] = {}


def get_extractor(device: torch.device | str = "cpu") -> Extractor:
    """The feature extractor, loaded once per process and device."""
    device = torch.device(device)
    if str(device) not in _EXTRACTORS:
        weights = fid_weights.resolve_weights()
        model = fid_fused.fuse(fid_weights.load_extractor(weights.path)).to(device)
        if device.type == "cpu":
            # oneDNN's convolutions are faster on channels-last tensors (docs/performance.md).
            model = model.to(memory_format=torch.channels_last)
        _EXTRACTORS[str(device)] = Extractor(model, weights, device, fid_fused.TAG)
    return _EXTRACTORS[str(device)]


@torch.no_grad()
def batch_features(images: Tensor, extractor: Extractor) -> np.ndarray:
    """Pool3 features (B, 2048) float32, as the network gives them, of one batch of uint8 images, computed
    in float32 with TF32 off (bench.evaluation.precision). float32 holds them exactly; statistics
    convert to float64."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise TypeError(f"FID takes uint8 (N, 3, H, W) images, got {images.dtype} {tuple(images.shape)}")
    with evaluation_precision(extractor.device.type):  # every caller: evaluator, generation, reference cache
        return extractor.model(images.to(extractor.device))[0].float().cpu().numpy()


def inception_features(images: Tensor, batch_size: int = BATCH_SIZE, device: torch.device | str = "cpu",
                       extractor: Extractor | None = None) -> np.ndarray:
    """Pool3 features (N, 2048) float64 of uint8 (N, 3, H, W) images, in order."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise TypeError(f"FID takes uint8 (N, 3, H, W) images, got {images.dtype} {tuple(images.shape)}")
    ext = extractor or get_extractor(device)
    out = [batch_features(images[i : i + batch_size], ext) for i in range(0, len(images), batch_size)]
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, FEATURE_DIM))


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) in float64; sigma is the unbiased covariance, as TTUR, pytorch-fid and torch-fidelity."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"FID needs at least 2 feature vectors, got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((sigma + sigma.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance between two Gaussians (see the module docstring for the trace term)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"mismatched statistics: {mu1.shape} {sigma1.shape} vs {mu2.shape} {sigma2.shape}")
    # One BLAS thread: on these shared 2-core machines a 2048x2048 eigh took 27 s with 2 threads under
    # load and 4 s with one (threads spin against each other); on an idle machine the difference is small.
    with threadpool_limits(limits=1, user_api="blas"):
        root1 = _psd_sqrt(sigma1)
        middle = root1 @ sigma2 @ root1
        eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def _poly_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a @ b.T / a.shape[1] + KID_COEF0) ** KID_DEGREE


def kid(features1: np.ndarray, features2: np.ndarray, subsets: int = KID_SUBSETS,
        subset_size: int = KID_SUBSET_SIZE, seed: int = KID_SEED) -> tuple[float, float, int]:
    """(mean, std, subset size used) of the unbiased MMD^2 with the cubic polynomial kernel
    k(x, y) = (x.y / d + 1)^3 over random subsets, as torch-fidelity (same subset sampling, float64).
    The subset size is capped at the smaller set's size. float32 features are converted to float64
    per subset (the same values as converting them first, without a float64 copy of large sets)."""
    f1, f2 = np.asarray(features1), np.asarray(features2)
    n1, n2 = len(f1), len(f2)
    m = min(subset_size, n1, n2)
    if m < 2:
        raise ValueError("KID needs at least 2 images per set")
    full = max(n1, n2) <= KID_FULL_KERNEL_MAX
    if full:  # each subset's kernels are sub-matrices of these: 100x less arithmetic for small sets
        g1, g2 = f1.astype(np.float64), f2.astype(np.float64)
        k11, k22, k12 = _poly_kernel(g1, g1), _poly_kernel(g2, g2), _poly_kernel(g1, g2)
    rng = np.random.RandomState(seed)
    mmds = np.zeros(subsets)
    for i in range(subsets):
        i1 = rng.choice(n1, m, replace=False)
        i2 = rng.choice(n2, m, replace=False)
        if full:
            kxx, kyy, kxy = k11[np.ix_(i1, i1)], k22[np.ix_(i2, i2)], k12[np.ix_(i1, i2)]
        else:
            x, y = f1[i1].astype(np.float64), f2[i2].astype(np.float64)
            kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
        mmds[i] = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.sum() / (m * m)
    return float(mmds.mean()), float(mmds.std()), m
