"""rFID and KID as set metrics of a streaming evaluation: Inception features of the reconstructions
(and, when the reference cache has no entry, of the originals) accumulated batch by batch, the
distances taken once at the end. Both share one accumulator; its features of the reconstructions
also go to the run folder (float16), for bootstrap intervals without re-running the model."""
from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bench.core import run_folder
from bench.evaluation.metrics import fid, fid_infinity, fid_reference, fid_reference_choice, keys
from bench.evaluation.metrics.registry import LOWER, Batch, EvalContext, Metric, register_metric


FEATURES_RECONS = "fid.features"  # names of its arrays in Evaluation.arrays
FEATURES_ORIGINALS = "fid.reference_features"


class FidAccumulator:
    def __init__(self, ctx: EvalContext) -> None:
        self.ctx = ctx
        self.extractor = fid.get_extractor(ctx.device)
        self.fixed = ctx.fixed_reference  # a --fid-reference other than val: the originals are not needed
        self.reference = (None if self.fixed is not None else
                          fid_reference.StreamingReference(ctx.reference, ctx.n_images, self.extractor, ctx.use_cache))
        self._chunks: list[np.ndarray] = []
        self.features_s = 0.0
        self.features: np.ndarray | None = None  # (N, 2048) float32 of the reconstructions, after finish()
        self.reference_features: np.ndarray | None = None  # and of the originals

    def update(self, batch: Batch) -> None:
        if batch.originals.shape != batch.recons.shape:
            raise ValueError(f"originals {tuple(batch.originals.shape)} and reconstructions "
                             f"{tuple(batch.recons.shape)} differ")
        if self.reference is not None:
            self.reference.update(batch.originals)
        t0 = time.perf_counter()
        self._chunks.append(fid.batch_features(batch.recons, self.extractor))
        self.features_s += time.perf_counter() - t0

    def finish(self) -> tuple[dict[str, Any], dict[str, Any]]:
        if self.reference is None:
            return self._finish_fixed()
        ref = self.reference.finish(self.ctx.reread_originals)
        feats = np.concatenate(self._chunks)
        self._chunks = []
        self.features, self.reference_features = feats, ref.features
        mu, sigma = fid.statistics(feats)
        t1 = time.perf_counter()
        metrics: dict[str, Any] = {keys.FID: fid.frechet_distance(ref.mu, ref.sigma, mu, sigma)}
        del mu, sigma
        n = len(feats)
        entry: dict[str, Any] = {
            **self._common(n),
            "reference": fid_reference_choice.VAL,  # the short label (fid_reference_choice); tables split by it
            "reference_detail": "originals of the same split" + (f", cached as {ref.path.name}" if ref.path
                                                                 else ", not cached"),
            # The cache entry holding the originals' features (fid_reference.reference_file finds it).
            "reference_file": ref.path.name if ref.path else None,
            "reference_cached": ref.cached,
        }
        if n > fid_infinity.MIN_SUBSAMPLE:
            t2 = time.perf_counter()
            est = fid_infinity.paired(feats, ref.features)
            metrics[keys.FID_INF] = est.value
            entry["fid_inf"] = {**est.describe(), "seconds": time.perf_counter() - t2}
        assert ref.features is not None
        self._kid(metrics, entry, ref.features, feats)
        entry["distance_s"] = time.perf_counter() - t1
        return metrics, {"fid": entry}

    def _common(self, n: int) -> dict[str, Any]:
        return {
            "n_images": n,
            "rank_deficient": n < fid.MIN_FULL_RANK,
            **self.extractor.describe(),
            "statistics": "mu and unbiased covariance in float64; tr sqrt via eigenvalues of S1^1/2 S2 S1^1/2",
            "device": self.extractor.device.type,  # part of the reference cache key (fid_reference)
            "batch_size": self.ctx.batch_size,
            "features_s": self.features_s,
            "images_per_s": n / self.features_s if self.features_s > 0 else None,
        }

    def _kid(self, metrics: dict[str, Any], entry: dict[str, Any], ref_features: np.ndarray, feats: np.ndarray) -> None:
        mean, std, m = fid.kid(ref_features, feats)
        metrics[keys.KID] = mean
        metrics[keys.KID_STD] = std
        entry["kid"] = {"subsets": fid.KID_SUBSETS, "subset_size": m, "kernel": "(x.y/2048 + 1)^3",
                        "estimator": "unbiased", "seed": fid.KID_SEED}

    def _finish_fixed(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """rFID against a fixed reference (--fid-reference train:N or stats:PATH): the reconstructions'
        statistics against the reference's; rFID-infinity subsamples the reconstructions only (the
        reference is a fixed set, as for gFID-infinity); KID needs the reference's features, which a
        statistics file does not have."""
        ref = self.fixed
        feats = np.concatenate(self._chunks)
        self._chunks = []
        self.features, self.reference_features = feats, None  # nothing to pair: no paired resampling
        mu, sigma = fid.statistics(feats)
        t1 = time.perf_counter()
        metrics: dict[str, Any] = {keys.FID: fid.frechet_distance(ref.mu, ref.sigma, mu, sigma),
                                   keys.KID: None, keys.KID_STD: None}
        del mu, sigma
        n = len(feats)
        info = dict(ref.info)
        entry: dict[str, Any] = {**self._common(n), "reference": info.pop("label"),
                                 "reference_detail": info,
                                 "reference_file": ref.path.name if ref.path is not None and ref.features is not None
                                 else None,
                                 "reference_cached": ref.cached,
                                 "reference_n_images": None if ref.features is None else len(ref.features)}
        if n > fid_infinity.MIN_SUBSAMPLE:
            t2 = time.perf_counter()
            est = fid_infinity.against_reference(feats, ref.mu, ref.sigma, ref.features)
            metrics[keys.FID_INF] = est.value
            entry["fid_inf"] = {**est.describe(), "subsampled": "the reconstructions only; the reference is fixed",
                                "seconds": time.perf_counter() - t2}
        if ref.features is not None:
            self._kid(metrics, entry, ref.features, feats)
        else:
            entry["kid"] = {"skipped": "KID needs the reference's features; a statistics file holds only mu and sigma"}
        entry["distance_s"] = time.perf_counter() - t1
        return metrics, {"fid": entry}

    def files(self) -> dict[str, np.ndarray]:
        """Features of the reconstructions in image order, float16 (enough for resampling FID)."""
        assert self.features is not None, "finish() first"
        return {run_folder.FEATURES: self.features.astype(np.float16)}

    def arrays(self) -> dict[str, np.ndarray]:
        """float32 features: FEATURES_RECONS of the reconstructions, FEATURES_ORIGINALS of the originals
        (absent against a fixed reference, which is not paired with the reconstructions)."""
        assert self.features is not None, "finish() first"
        if self.reference_features is None:
            return {FEATURES_RECONS: self.features}
        return {FEATURES_RECONS: self.features, FEATURES_ORIGINALS: self.reference_features}


def compute(originals: Tensor, recons: Tensor, protocol: Mapping[str, Any] | None = None,
            batch_size: int = fid.BATCH_SIZE, device: torch.device | str = "cpu",
            use_cache: bool = True) -> tuple[dict[str, float | None], dict[str, Any]]:
    """rFID and KID of two whole uint8 sets (metrics, protocol entry), through the accumulator."""
    if originals.shape != recons.shape:
        raise ValueError(f"originals {tuple(originals.shape)} and reconstructions {tuple(recons.shape)} differ")
    chunks = lambda t: (t[i : i + batch_size] for i in range(0, len(t), batch_size))  # noqa: E731
    ctx = EvalContext(torch.device(device), batch_size, len(originals), tuple(originals.shape[-2:]),
                      dict(protocol) if protocol else None, use_cache, reread_originals=lambda: chunks(originals))
    acc = FidAccumulator(ctx)
    for a, b in zip(chunks(originals), chunks(recons)):
        acc.update(Batch(a, b))
    metrics, entries = acc.finish()
    return metrics, entries["fid"]


def _declare(key: str, label: str, better: str | None, decimals: int, description: str) -> None:
    register_metric(Metric(key, label, better, decimals, perceptual=True, accumulator=FidAccumulator,
                           protocol_key="fid", description=description))


_declare(keys.FID, "rFID", LOWER, 2, "Frechet distance of Inception-v3 pool3 features, reconstructions vs their originals")
_declare(keys.FID_INF, "rFID∞", LOWER, 2, "FID-infinity (Chong & Forsyth 2020): rFID at 15 subsample sizes of the same "
         "images, a line in 1/N, its intercept; comparable across image counts once its smallest "
         "subsample has 2048 images")
_declare(keys.KID, "KID", LOWER, 4, "unbiased MMD^2 of the same features, cubic kernel, mean over subsets")
_declare(keys.KID_STD, "KID std", None, 4, "std of KID over its subsets")
