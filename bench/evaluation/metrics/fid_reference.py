"""Cached FID reference statistics: the originals of a split are the same for every method and seed,
so their features and statistics are computed once and kept on disk.

An entry is keyed by (dataset, split, resolution, image count, feature extractor + weights source,
device type and precision), named `<dataset>__<split>__<R>px__n<N>__<extractor>[__<device>-<precision>].npz`
under `cache_dir("fid", "reference")`, and checked against a sha1 of the uint8 images, so a changed
dataset is recomputed rather than reused. CPU- and GPU-made statistics differ by float rounding (other
kernels, other summation orders), so they never share an entry. CPU float32 entries keep the name
without the device part: that is how every entry was named before the device joined the key, and CPU
evaluation computed them exactly as now (float32; autocast never reached the Inception network), so
they stay usable. Entries record their device and precision (`meta`), and an entry whose record
disagrees with its name's is recomputed.
It holds mu and sigma (float64), the features (float32, exactly as the network gives them) and a
JSON `meta`. Records name their entry (protocol["fid"]["reference_file"]); `reference_file(name)`
finds it again, e.g. to resample the originals' features.

During a streaming evaluation the digest is known only after the last batch. `StreamingReference`
therefore decides at the start whether to compute the originals' features (no readable entry under
the key) or to trust the entry, and checks the digest at the end; an entry that turns out stale is
recomputed from a second look at the originals.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from bench.core.atomic import atomic_path
from bench.core.paths import cache_dir, cache_root
from bench.evaluation import precision
from bench.evaluation.metrics import fid, fid_weights

REFERENCE_FOLDER = ("fid", "reference")
UNNAMED_VARIANT = precision.cache_tag("cpu")  # the variant whose entries carry no device part (module docstring)


@dataclass
class Reference:
    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray | None  # (N, 2048) float32, for KID; None for statistics read from a file (stats:PATH)
    cached: bool  # True when read from the cache, False when computed now
    path: Path | None
    info: dict[str, Any] = field(default_factory=dict)


class ImagesDigest:
    """sha1 of the uint8 images and their shape, fed batch by batch; equal to `images_digest` of the
    whole set. The total count is given up front because the shape is hashed first."""

    def __init__(self, n_images: int) -> None:
        self.n_images = n_images
        self.seen = 0
        self._h: Any = None

    def update(self, images: Tensor) -> None:
        if self._h is None:
            self._h = hashlib.sha1(str((self.n_images, *images.shape[1:])).encode())
        self._h.update(images.contiguous().numpy().tobytes())
        self.seen += len(images)

    def hexdigest(self) -> str:
        if self.seen != self.n_images or self._h is None:
            raise ValueError(f"digest of {self.n_images} images fed {self.seen}")
        return self._h.hexdigest()


def images_digest(images: Tensor) -> str:
    """sha1 of the uint8 images and their shape: detects a changed dataset behind an unchanged key."""
    d = ImagesDigest(len(images))
    d.update(images)
    return d.hexdigest()


def _slug(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(value)).strip("-") or "none"


def reference_key(protocol: Mapping[str, Any], n_images: int, extractor_key: str, device_type: str = "cpu") -> str:
    """dataset__split__resolution__count__extractor[__device-precision], from the dataset's `protocol`
    dict and the device type the features are computed on (no last part for the CPU: module docstring)."""
    missing = [k for k in ("dataset", "split", "resolution") if k not in protocol]
    if missing:
        raise ValueError(f"a cached FID reference needs dataset, split and resolution in the protocol; missing {missing}")
    variant = precision.cache_tag(device_type)
    parts = (protocol["dataset"], protocol["split"], f"{protocol['resolution']}px", f"n{n_images}", extractor_key,
             *([] if variant == UNNAMED_VARIANT else [variant]))
    return "__".join(_slug(p) for p in parts)


def reference_path(protocol: Mapping[str, Any], n_images: int, extractor_key: str, device_type: str = "cpu") -> Path:
    return reference_file(f"{reference_key(protocol, n_images, extractor_key, device_type)}.npz")


def reference_file(name: str) -> Path:
    """Where the entry a record names (protocol["fid"]["reference_file"]) lies in this machine's cache."""
    return cache_dir(*REFERENCE_FOLDER) / name


def _made_as(meta: Mapping[str, Any], device_type: str | None) -> bool:
    """Whether an entry's record agrees with the device its name says (entries from before the device
    joined the key record none, and only the CPU name can hold them)."""
    if device_type is None:
        return True
    made = precision.cache_tag(meta["device"]) if "device" in meta else UNNAMED_VARIANT
    return made == precision.cache_tag(device_type) and meta.get("precision", precision.TAG) == precision.TAG


def read_entry(path: Path, digest: str | None = None, device_type: str | None = None) -> Reference | None:
    """The entry at `path` if it is readable, (when `digest` is given) made from those images and (when
    `device_type` is given) computed on that device type in the evaluation precision."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if (digest is not None and meta.get("digest") != digest) or not _made_as(meta, device_type):
                return None
            return Reference(z["mu"], z["sigma"], z["features"].astype(np.float32), True, path, meta)
    except (OSError, ValueError, KeyError):
        return None  # unreadable or from another version: recompute and overwrite


def _readable(path: Path, device_type: str) -> bool:
    """Whether an entry with metadata, made on `device_type`, exists (read without its arrays)."""
    if not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return "digest" in meta and _made_as(meta, device_type)
    except (OSError, ValueError, KeyError):
        return False


def _write_entry(path: Path, features: np.ndarray, digest: str, protocol: Mapping[str, Any], extractor_key: str,
                 features_s: float, device_type: str) -> Reference:
    mu, sigma = fid.statistics(features)
    meta = {"digest": digest, "key": path.stem, "n_images": len(features), "features_s": features_s,
            "protocol": {k: protocol[k] for k in ("dataset", "split", "resolution") if k in protocol},
            "extractor": extractor_key, "device": device_type, "precision": precision.TAG,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with atomic_path(path, suffix=".npz") as tmp:  # np.savez keeps a name that ends in .npz
        np.savez(tmp, mu=mu, sigma=sigma, features=features.astype(np.float32), meta=json.dumps(meta))
    return Reference(mu, sigma, features, False, path, meta)


class StreamingReference:
    """The originals' side of rFID in an evaluation that sees the originals batch by batch.

    Without a usable cache key (`use_cache` off, or no protocol) the features are always computed.
    Otherwise the originals' features are computed only when no entry exists under the key; an entry
    found stale at the end (digest mismatch) is recomputed from `reread()`, the originals again."""

    def __init__(self, protocol: Mapping[str, Any] | None, n_images: int, extractor: fid.Extractor,
                 use_cache: bool = True) -> None:
        self.protocol = dict(protocol or {})
        self.extractor = extractor
        self.n_images = n_images
        self.device_type = extractor.device.type
        self.path = (reference_path(self.protocol, n_images, extractor.key, self.device_type) if use_cache and protocol
                     else None)
        self.digest = ImagesDigest(n_images) if self.path is not None else None
        trust_entry = self.path is not None and _readable(self.path, self.device_type)
        self._chunks: list[np.ndarray] | None = None if trust_entry else []
        self.features_s = 0.0

    @property
    def computing(self) -> bool:
        """Whether the originals' features are being computed in this pass."""
        return self._chunks is not None

    def update(self, originals: Tensor) -> None:
        if self.digest is not None:
            self.digest.update(originals)
        if self._chunks is not None:
            t0 = time.perf_counter()
            self._chunks.append(fid.batch_features(originals, self.extractor))
            self.features_s += time.perf_counter() - t0

    def finish(self, reread: Callable[[], Iterable[Tensor]] | None = None) -> Reference:
        feats = np.concatenate(self._chunks) if self._chunks else None
        self._chunks = None
        if self.path is None:
            assert feats is not None
            mu, sigma = fid.statistics(feats)
            return Reference(mu, sigma, feats, False, None, {"features_s": self.features_s})
        assert self.digest is not None
        digest = self.digest.hexdigest()
        with fid_weights.file_lock(self.path.with_suffix(".lock")):
            # An entry written meanwhile by a parallel run of the same split wins over ours: every run
            # of a split then reads the same reference numbers.
            if (ref := read_entry(self.path, digest, self.device_type)) is not None:
                return ref
            if feats is None:
                feats = self._recompute(reread, digest)
            return _write_entry(self.path, feats, digest, self.protocol, self.extractor.key, self.features_s,
                                self.device_type)

    def _recompute(self, reread: Callable[[], Iterable[Tensor]] | None, digest: str) -> np.ndarray:
        if reread is None:
            raise ValueError(f"FID reference {self.path} is stale and the originals cannot be read again")
        check, chunks = ImagesDigest(self.n_images), []
        t0 = time.perf_counter()
        for originals in reread():
            check.update(originals)
            chunks.append(fid.batch_features(originals, self.extractor))
        self.features_s += time.perf_counter() - t0
        if check.hexdigest() != digest:
            raise RuntimeError("the originals changed between two reads of the same split (a random augmentation "
                               "at evaluation?): FID needs a deterministic evaluation split")
        return np.concatenate(chunks)


def reference_statistics(images: Tensor, protocol: Mapping[str, Any] | None, batch_size: int = fid.BATCH_SIZE,
                         device: Any = "cpu", extractor: fid.Extractor | None = None,
                         use_cache: bool = True) -> Reference:
    """(mu, sigma, features) of a whole reference image set, through the same streaming path."""
    ext = extractor or fid.get_extractor(device)
    stream = StreamingReference(protocol, len(images), ext, use_cache)
    batches = lambda: (images[i : i + batch_size] for i in range(0, len(images), batch_size))  # noqa: E731
    for batch in batches():
        stream.update(batch)
    return stream.finish(batches)


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


def sample_images(ds: Any, limit: int, seed: int = 0) -> tuple[Tensor, list[int]]:
    """uint8 images of a split for a fixed reference: all of them, or `limit` chosen by a seeded
    permutation (a prefix of a sorted split could hold only a few classes), kept in split order. The
    generation reference and `--fid-reference train:N` both draw with it, so equal N share one entry."""
    import torch

    n = len(ds)
    if limit and limit < n:
        chosen = sorted(torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit].tolist())
    else:
        chosen = list(range(n))
    return torch.stack([ds[i] for i in chosen]), chosen


def fixed_reference(choice: Any, train_view: Any = None, device: Any = "cpu", extractor: fid.Extractor | None = None,
                    use_cache: bool = True, protocol: Mapping[str, Any] | None = None) -> Reference | None:
    """The statistics a non-`val` --fid-reference (fid_reference_choice.ReferenceChoice) stands for, made
    before the evaluation streams: None for `val` (the evaluated originals are the reference). `train_view`
    is the training split in a deterministic view (no random crop or flip), `protocol` its cache key
    (default: its own protocol). `info["label"]` is what
    records write as protocol["fid"]["reference"]."""
    from bench.evaluation.metrics import fid_reference_choice as choices

    if not choice.fixed:
        return None
    if choice.kind == choices.STATS:
        mu, sigma, layout = choices.read_stats(choice.path)
        return Reference(mu, sigma, None, False, choice.path,  # type: ignore[arg-type]
                         {"label": choice.label, "layout": layout, "file": str(choice.path), "sha1": choice.sha1,
                          "statistics": "mu and sigma of Inception pool3 as stored in the file"})
    if train_view is None:
        raise ValueError(f"{choice.label}: the training split is needed for this FID reference")
    images, chosen = sample_images(train_view, choice.n_images, choices.TRAIN_SEED)
    protocol = dict(protocol if protocol is not None else getattr(train_view, "protocol", {}) or {})
    ref = reference_statistics(images, protocol, device=device, extractor=extractor, use_cache=use_cache)
    ref.info = {**ref.info, "label": f"{choices.TRAIN}:{len(chosen)}", "of": len(train_view),
                "subset_seed": choices.TRAIN_SEED if len(chosen) < len(train_view) else None,
                "split": protocol.get("split", "train")}
    return ref
