"""rFID (and KID) from Inception-v3 pool3 features, computed with torch-fidelity's feature extractor.

- Features: torch-fidelity's `inception-v3-compat`, layer "2048" (pool3), fed the uint8 images of the
  evaluator's boundary; it resizes them to 299x299 with its TensorFlow-1.x-compatible bilinear
  interpolation and scales (x - 128) / 128, as torch-fidelity does for every input. Weights: see
  `fid_weights` (torch-fidelity's own file when cached, else derived offline and verified).
- Statistics: mu and the unbiased covariance (np.cov, rowvar=False) in float64.
- Frechet distance: ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^1/2), with the trace term taken
  as the sum of square roots of the eigenvalues of S1^1/2 S2 S1^1/2, a symmetric PSD matrix, so it is
  real and stable even when the covariances are rank-deficient (fewer than 2049 images). Equal to
  pytorch-fid's `calculate_frechet_distance` (scipy sqrtm) where that converges.
- Reference statistics of a dataset split are cached on disk, keyed by (dataset, split, resolution,
  image count, feature extractor + weights source), and checked against a digest of the images, so a
  changed dataset is recomputed rather than reused. `clear_cache()` removes them.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import Tensor, nn

from bench.core.atomic import atomic_path
from bench.core.paths import cache_dir, cache_root
from bench.evaluation.metrics import fid_weights, keys
from bench.evaluation.metrics.registry import LOWER, Metric, register_metric

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
REFERENCE_FOLDER = ("fid", "reference")


@dataclass
class Extractor:
    """The loaded feature extractor and what it is, for the protocol record."""

    model: nn.Module
    weights: fid_weights.InceptionWeights
    device: torch.device

    @property
    def name(self) -> str:
        return f"{FEATURE_EXTRACTOR}/{FEATURE_LAYER}"

    @property
    def key(self) -> str:
        """Identifies the features for the reference cache: network, layer, weights source."""
        return f"{FEATURE_EXTRACTOR}-{FEATURE_LAYER}-{self.weights.source}"

    def describe(self) -> dict[str, Any]:
        return {"feature_extractor": f"torch-fidelity {FEATURE_EXTRACTOR}, pool3 ({FEATURE_DIM}-d), 2015-12-05 FID weights",
                "weights": self.weights.source, "weights_file": self.weights.path.name,
                "weights_detail": self.weights.detail,
                "resize": f"torch-fidelity TF1.x-compatible bilinear to {INPUT_SIZE}x{INPUT_SIZE} from uint8, "
                          "then (x-128)/128"}


_EXTRACTORS: dict[str, Extractor] = {}


def get_extractor(device: torch.device | str = "cpu") -> Extractor:
    """The feature extractor, loaded once per process and device."""
    device = torch.device(device)
    if str(device) not in _EXTRACTORS:
        weights = fid_weights.resolve_weights()
        model = fid_weights.load_extractor(weights.path).to(device)
        if device.type == "cpu":
            # channels_last is about 1.4x faster on CPU here; features move by ~1e-6.
            model = model.to(memory_format=torch.channels_last)
        _EXTRACTORS[str(device)] = Extractor(model, weights, device)
    return _EXTRACTORS[str(device)]


@torch.no_grad()
def inception_features(images: Tensor, batch_size: int = BATCH_SIZE, device: torch.device | str = "cpu",
                       extractor: Extractor | None = None) -> np.ndarray:
    """Pool3 features (N, 2048) float64 of uint8 (N, 3, H, W) images, in order."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise TypeError(f"FID takes uint8 (N, 3, H, W) images, got {images.dtype} {tuple(images.shape)}")
    ext = extractor or get_extractor(device)
    out = [ext.model(images[i : i + batch_size].to(ext.device))[0].double().cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, FEATURE_DIM))


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
    The subset size is capped at the smaller set's size."""
    f1, f2 = np.asarray(features1, np.float64), np.asarray(features2, np.float64)
    n1, n2 = len(f1), len(f2)
    m = min(subset_size, n1, n2)
    if m < 2:
        raise ValueError("KID needs at least 2 images per set")
    full = max(n1, n2) <= KID_FULL_KERNEL_MAX
    if full:  # each subset's kernels are sub-matrices of these: 100x less arithmetic for small sets
        k11, k22, k12 = _poly_kernel(f1, f1), _poly_kernel(f2, f2), _poly_kernel(f1, f2)
    rng = np.random.RandomState(seed)
    mmds = np.zeros(subsets)
    for i in range(subsets):
        i1 = rng.choice(n1, m, replace=False)
        i2 = rng.choice(n2, m, replace=False)
        if full:
            kxx, kyy, kxy = k11[np.ix_(i1, i1)], k22[np.ix_(i2, i2)], k12[np.ix_(i1, i2)]
        else:
            x, y = f1[i1], f2[i2]
            kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
        mmds[i] = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.sum() / (m * m)
    return float(mmds.mean()), float(mmds.std()), m


# --- reference statistics cache ---------------------------------------------------------------------


@dataclass
class Reference:
    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray  # kept for KID (N x 2048 float32 on disk: 8 MB per 1000 images)
    cached: bool  # True when read from the cache, False when computed now
    path: Path | None
    info: dict[str, Any] = field(default_factory=dict)


def images_digest(images: Tensor) -> str:
    """sha1 of the uint8 images and their shape: detects a changed dataset behind an unchanged key."""
    h = hashlib.sha1(str(tuple(images.shape)).encode())
    h.update(images.contiguous().numpy().tobytes())
    return h.hexdigest()


def _slug(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(value)).strip("-") or "none"


def reference_key(protocol: Mapping[str, Any], n_images: int, extractor_key: str) -> str:
    """dataset__split__resolution__count__extractor, from the dataset's `protocol` dict."""
    missing = [k for k in ("dataset", "split", "resolution") if k not in protocol]
    if missing:
        raise ValueError(f"a cached FID reference needs dataset, split and resolution in the protocol; missing {missing}")
    parts = (protocol["dataset"], protocol["split"], f"{protocol['resolution']}px", f"n{n_images}", extractor_key)
    return "__".join(_slug(p) for p in parts)


def reference_path(protocol: Mapping[str, Any], n_images: int, extractor_key: str) -> Path:
    return cache_dir(*REFERENCE_FOLDER) / f"{reference_key(protocol, n_images, extractor_key)}.npz"


def reference_statistics(images: Tensor, protocol: Mapping[str, Any] | None, batch_size: int = BATCH_SIZE,
                         device: torch.device | str = "cpu", extractor: Extractor | None = None,
                         use_cache: bool = True) -> Reference:
    """(mu, sigma, features) of a reference image set, from the cache when its key and digest match,
    else computed (once across processes: a file lock guards the computation) and cached."""
    ext = extractor or get_extractor(device)
    if not use_cache or not protocol:
        t0 = time.perf_counter()
        feats = inception_features(images, batch_size, extractor=ext)
        mu, sigma = statistics(feats)
        return Reference(mu, sigma, feats, False, None, {"features_s": time.perf_counter() - t0})
    path = reference_path(protocol, len(images), ext.key)
    digest = images_digest(images)
    with fid_weights.file_lock(path.with_suffix(".lock")):
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    meta = json.loads(str(z["meta"]))
                    if meta.get("digest") == digest:
                        return Reference(z["mu"], z["sigma"], z["features"].astype(np.float64), True, path, meta)
            except (OSError, ValueError, KeyError):
                pass  # unreadable or from another version: recompute and overwrite
        t0 = time.perf_counter()
        feats = inception_features(images, batch_size, extractor=ext)
        mu, sigma = statistics(feats)
        meta = {"digest": digest, "key": path.stem, "n_images": len(images), "features_s": time.perf_counter() - t0,
                "protocol": {k: protocol[k] for k in ("dataset", "split", "resolution") if k in protocol},
                "extractor": ext.key, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        with atomic_path(path, suffix=".npz") as tmp:  # np.savez keeps a name that ends in .npz
            np.savez(tmp, mu=mu, sigma=sigma, features=feats.astype(np.float32), meta=json.dumps(meta))
        return Reference(mu, sigma, feats, False, path, meta)


def clear_cache(dataset: str | None = None) -> int:
    """Remove cached reference statistics (of one dataset, or all); returns how many files went.
    Derived weights stay: they do not depend on any dataset (remove cache_root()/fid to drop them too)."""
    folder = cache_root().joinpath(*REFERENCE_FOLDER)
    if not folder.is_dir():
        return 0
    removed = 0
    for path in folder.glob("*.npz"):
        if dataset is None or path.name.startswith(f"{_slug(dataset)}__"):
            path.unlink(missing_ok=True)
            removed += 1
    if dataset is None:
        shutil.rmtree(folder, ignore_errors=True)
    return removed


# --- one call for the evaluator and the CLI ---------------------------------------------------------


def compute(originals: Tensor, recons: Tensor, protocol: Mapping[str, Any] | None = None,
            batch_size: int = BATCH_SIZE, device: torch.device | str = "cpu", with_kid: bool = True,
            use_cache: bool = True) -> tuple[dict[str, float | None], dict[str, Any]]:
    """rFID (and KID) of reconstructions against their originals: (metrics, protocol entry).
    The originals' statistics come from the reference cache when `protocol` names the split."""
    if originals.shape != recons.shape:
        raise ValueError(f"originals {tuple(originals.shape)} and reconstructions {tuple(recons.shape)} differ")
    ext = get_extractor(device)
    ref = reference_statistics(originals, protocol, batch_size, extractor=ext, use_cache=use_cache)
    t0 = time.perf_counter()
    feats = inception_features(recons, batch_size, extractor=ext)
    features_s = time.perf_counter() - t0
    mu, sigma = statistics(feats)
    t1 = time.perf_counter()
    metrics: dict[str, float | None] = {keys.FID: frechet_distance(ref.mu, ref.sigma, mu, sigma)}
    entry: dict[str, Any] = {
        "n_images": len(originals),
        "rank_deficient": len(originals) < MIN_FULL_RANK,
        **ext.describe(),
        "statistics": "mu and unbiased covariance in float64; tr sqrt via eigenvalues of S1^1/2 S2 S1^1/2",
        "reference": "originals of the same split" + (f", cached as {ref.path.name}" if ref.path else ", not cached"),
        "reference_cached": ref.cached,
        "batch_size": batch_size,
        "features_s": features_s,
        "images_per_s": len(recons) / features_s if features_s > 0 else None,
    }
    if with_kid:
        mean, std, m = kid(ref.features, feats)
        metrics[keys.KID] = mean
        metrics[keys.KID_STD] = std
        entry["kid"] = {"subsets": KID_SUBSETS, "subset_size": m, "kernel": "(x.y/2048 + 1)^3", "estimator": "unbiased",
                        "seed": KID_SEED}
    entry["distance_s"] = time.perf_counter() - t1
    return metrics, entry


register_metric(Metric(keys.FID, "rFID", LOWER, 2, description="Frechet distance of Inception-v3 pool3 features, "
                       "reconstructions vs their originals"))
register_metric(Metric(keys.KID, "KID", LOWER, 4, description="unbiased MMD^2 of the same features, cubic kernel, "
                       "mean over subsets"))
register_metric(Metric(keys.KID_STD, "KID std", None, 4, description="std of KID over its subsets"))
