"""95% intervals of a prior's gFID and KID: a bootstrap over its generated samples.

The features are the ones the run stored with each sample batch (samples/batch_<b>.npz); the
reference is the training split's entry in the FID cache (the record names it), and it stays fixed:
every prior of a dataset is scored against the same reference, so only which samples were drawn
varies. The resampling is bench.reporting.feature_bootstrap's, on the tables' fixed index sets
(bench.reporting.intervals: FEATURE_RESAMPLES resamples, a fixed seed), so a build on any machine
gives the same interval.

The run writes the replicates to `bootstrap.npz` in the prior folder, keyed by a digest of the
features, the reference entry and the resampling: tables then read them at once, also on a machine
whose cache lacks the reference entry. A folder without a valid file (a prior from before) is
computed from its stored features on demand and not written (tables only read results folders).

Nothing here imports torch.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.core.atomic import atomic_path
from bench.generation import folder
from bench.reporting import feature_bootstrap, intervals
from bench.reporting.per_image import reference_entry

KIND = "samples"  # the kind of interval: a bootstrap over the generated samples
DESCRIPTION = ("bootstrap over the generated samples (reference statistics fixed), shifted percentile "
               "interval, from the stored Inception features")


@dataclass
class Replicates:
    """gFID and KID of each resample (same resamples for both), over n_samples generated images."""

    gfid: np.ndarray
    gkid: np.ndarray
    n_samples: int

    def interval(self, key: str, estimate: float) -> intervals.Interval | None:
        reps = self.gfid if key == "gfid" else self.gkid
        iv = intervals.bootstrap_interval(estimate, reps, self.n_samples)
        return None if iv is None else intervals.Interval(iv.low, iv.high, KIND, iv.n)


def sample_features(prior_dir: Path | str, n_samples: int | None = None) -> tuple[np.ndarray | None, str | None]:
    """(features (N, d) float64 in sample order, None) of the stored sample batches, or (None, why)."""
    sdir = Path(prior_dir) / folder.SAMPLES
    files = sorted(sdir.glob("batch_*.npz")) if sdir.is_dir() else []
    if not files:
        return None, f"no sample batches in the prior folder ({folder.SAMPLES}/)"
    parts = []
    for path in files:
        try:
            with np.load(path, allow_pickle=False) as z:
                if "features" not in z.files:
                    return None, f"{path.name} holds no Inception features"
                parts.append(np.asarray(z["features"], dtype=np.float64))
        except (OSError, ValueError) as exc:
            return None, f"{path.name} unreadable ({exc})"
    feats = np.concatenate(parts)
    if n_samples is not None and len(feats) != n_samples:
        return None, f"{len(feats)} stored sample features, the record scored {n_samples}"
    return feats, None


def digest(features: np.ndarray, reference_name: str | None) -> str:
    """What the replicates depend on: the features, the reference entry and the resampling."""
    h = hashlib.sha1(np.ascontiguousarray(features, dtype=np.float64).tobytes())
    h.update(json.dumps([features.shape, reference_name, intervals.FEATURE_RESAMPLES,
                         intervals.BOOTSTRAP_SEED]).encode())
    return h.hexdigest()


def compute(features: np.ndarray, mu: np.ndarray, sigma: np.ndarray,
            reference_features: np.ndarray) -> tuple[Replicates | None, str | None]:
    """The replicates of these generated features against this fixed reference, or (None, why)."""
    n = len(features)
    idx = intervals.resample_indices(n, intervals.FEATURE_RESAMPLES)
    reps = feature_bootstrap.generated_replicates(features, mu, sigma, reference_features, idx)
    if reps is None:
        return None, (f"{n} generated samples: more than {feature_bootstrap.MAX_IMAGES} (the resampling needs n x n "
                      f"matrices)" if n > feature_bootstrap.MAX_IMAGES else f"only {n} generated samples")
    return Replicates(reps["fid"], reps["kid"], n), None


def save(prior_dir: Path | str, reps: Replicates, key: str) -> Path:
    path = Path(prior_dir) / folder.BOOTSTRAP
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, gfid=reps.gfid, gkid=reps.gkid, n_samples=reps.n_samples, digest=key)
    return path


def _read(path: Path, key: str) -> Replicates | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["digest"]) != key:
                return None
            return Replicates(np.asarray(z["gfid"]), np.asarray(z["gkid"]), int(z["n_samples"]))
    except (OSError, ValueError, KeyError):
        return None


def _reference_name(record: dict[str, Any]) -> tuple[str | None, int | None]:
    ref = (((record.get("protocol") or {}).get("fid") or {}).get("reference") or {})
    return (ref.get("file"), ref.get("n_images")) if isinstance(ref, dict) else (None, None)


def load(prior_dir: Path | str, record: dict[str, Any]) -> tuple[Replicates | None, str | None]:
    """The replicates of a finished prior: from its bootstrap.npz when that matches its stored
    features, else computed from the features and the cached reference; (None, why) when neither."""
    fid_proto = (record.get("protocol") or {}).get("fid") or {}
    if not isinstance(fid_proto, dict) or fid_proto.get("skipped") or "generated" not in fid_proto:
        return None, "no gFID"
    feats, why = sample_features(prior_dir, fid_proto.get("generated"))
    if feats is None:
        return None, why
    name, n_ref = _reference_name(record)
    key = digest(feats, name)
    path = Path(prior_dir) / folder.BOOTSTRAP
    if path.is_file():
        got = _read(path, key)
        if got is not None:
            return got, None
    entry, why = reference_entry(name, n_ref)
    if entry is None:
        return None, why
    return compute(feats, *entry)


def tokenizer_rfid_features(prior_dir: Path | str) -> tuple[np.ndarray, np.ndarray] | None:
    """(reconstructions, originals) features of the rFID a prior measured for its tokenizer
    (bench.generation.tokenizer_rfid), or None (no readable file)."""
    path = Path(prior_dir) / folder.TOKENIZER_RFID
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return np.asarray(z["reconstructions"], np.float32), np.asarray(z["originals"], np.float32)
    except (OSError, ValueError, KeyError):
        return None
