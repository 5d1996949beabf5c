"""Opt-in decoded cache (`--dataset-cache`): the resized uint8 images of one split, written once into a
flat memory-mapped file, read by later runs instead of decoding full-size JPEG/PNG every epoch.

Key: dataset, split, resolution, the dataset folder, the image list, the resize filter and what is
stored (the whole resized image when training uses random crops, else the centre crop), and
CACHE_VERSION. A cached split gives exactly the tensors of the uncached one: the cache holds
`preprocess.stored_form` and both paths end with `preprocess.finish`. A file changed in place under
the same name is not noticed: delete the cache folder (printed in the record) to rebuild.

Layout of `$VQBENCH_CACHE/datasets/<dataset>-<split>-<R>-<key>/`: images.u8 (all stored images,
back to back), index.npy (int64 rows: byte offset, height, width), flags.npy (uint8: BAD, UPSCALED),
errors.json (why each bad file failed), meta.json.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Dataset

from bench.core.atomic import atomic_folder
from bench.core.paths import cache_dir

from .files import BAD, UPSCALED, ImageFiles

CACHE_VERSION = 1


def cache_key(ds: ImageFiles, where: Path) -> str:
    p = ds.prep
    blob = json.dumps({
        "version": CACHE_VERSION, "dataset": ds.dataset, "split": ds.split, "resolution": p.resolution,
        "where": str(Path(where).resolve()), "resize_filter": p.resize_filter, "resize": p.resize, "stores_full": p.stores_full,
        "color": ds.protocol.get("preprocessing", {}).get("color"),
        "names": hashlib.sha256(b"\n".join(ds._names.tolist())).hexdigest(),
    }, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_path(ds: ImageFiles, where: Path) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", ds.dataset).strip("_")[:60]
    return cache_dir("datasets") / f"{safe}-{ds.split}-{ds.prep.resolution}-{cache_key(ds, where)}"


def _identity(x: Any) -> Any:
    return x


class _Decode(Dataset):
    """One image's stored form for the builder (bad files are reported, never raised, in workers)."""

    def __init__(self, ds: ImageFiles) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, j: int) -> tuple[int, np.ndarray | None, bool, str | None]:
        arr, upscaled, err = self.ds.decode_stored(j)
        return j, arr, upscaled, err


def build(ds: ImageFiles, folder: Path, workers: int | None = None) -> dict[str, Any]:
    """Decode every image of `ds` once into `folder` (atomically: a temp folder, then a rename)."""
    workers = min(8, os.cpu_count() or 1) if workers is None else workers
    n = len(ds)
    index = np.zeros((n, 3), dtype=np.int64)
    flags = np.zeros(n, dtype=np.uint8)
    errors: dict[str, str] = {}
    t0 = time.perf_counter()
    offset = 0
    loader = DataLoader(_Decode(ds), batch_size=None, num_workers=workers, collate_fn=_identity)
    with atomic_folder(folder) as tmp:  # another process that finished the same cache first wins
        with open(tmp / "images.u8", "wb") as f:
            for j, arr, upscaled, err in loader:
                if err is not None:
                    if not ds.skip_bad_images:  # same message as the uncached path
                        ds._note(j, None, False, err)
                    flags[j] = BAD
                    errors[ds.name(j)] = err
                    continue
                flags[j] = UPSCALED if upscaled else 0
                f.write(arr.tobytes())
                index[j] = (offset, arr.shape[0], arr.shape[1])
                offset += arr.nbytes
        np.save(tmp / "index.npy", index)
        np.save(tmp / "flags.npy", flags)
        (tmp / "errors.json").write_text(json.dumps(errors, indent=1))
        meta = {"dataset": ds.dataset, "split": ds.split, "resolution": ds.prep.resolution, "n_images": n,
                "bytes": offset, "build_s": time.perf_counter() - t0, "stores_full": ds.prep.stores_full,
                "resize_filter": ds.prep.resize_filter, "version": CACHE_VERSION}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


class CachedImages(ImageFiles):
    """ImageFiles whose stored forms come from the cache; same keys, same tensors, same counts."""

    def __init__(self, ds: ImageFiles, folder: Path) -> None:
        super().__init__(ds.dataset, ds.split, ds.names, ds.paths, ds.prep, ds._protocol, ds.skip_bad_images)
        self.folder = folder
        self.index = np.load(folder / "index.npy")
        self.cached_flags = np.load(folder / "flags.npy")
        self.meta = json.loads((folder / "meta.json").read_text())
        self._errors: dict[str, str] | None = None
        self._images: np.memmap | None = None  # opened lazily, per process (DataLoader workers)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_images"] = None
        return state

    def _stored(self, j: int) -> np.ndarray | None:
        if self.cached_flags[j] & BAD:
            if self._errors is None:
                self._errors = json.loads((self.folder / "errors.json").read_text())
            return self._note(j, None, False, self._errors.get(self.name(j), "unreadable when the cache was built"))
        if self._images is None:
            # an all-bad split has an empty file, which np.memmap refuses; _stored never gets here then
            self._images = np.memmap(self.folder / "images.u8", dtype=np.uint8, mode="r")
        off, h, w = (int(v) for v in self.index[j])
        arr = self._images[off : off + h * w * 3].reshape(h, w, 3)
        return self._note(j, arr, bool(self.cached_flags[j] & UPSCALED), None)

    @property
    def protocol(self) -> dict[str, Any]:
        return {**super().protocol, "decoded_cache": str(self.folder)}


def cached(ds: ImageFiles, where: Path, workers: int | None = None) -> CachedImages:
    """`ds` read from its cache, building the cache first if it does not exist."""
    folder = cache_path(ds, where)
    if not (folder / "meta.json").is_file():
        build(ds, folder, workers)
    return CachedImages(ds, folder)


__all__ = ["CachedImages", "ImageFiles", "build", "cache_key", "cache_path", "cached"]
