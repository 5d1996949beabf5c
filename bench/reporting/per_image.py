"""What a run folder stores beyond its record, read back for the statistics of the tables: the
per-image metric values (run_folder.PER_IMAGE), the float16 Inception features of the
reconstructions (run_folder.FEATURES) and, from this machine's FID reference cache, the originals'
features the record names (protocol["fid"]["reference_file"]).

Nothing here imports torch: the cache entry is read with numpy in the layout
bench.evaluation.metrics.fid_reference writes (mu, sigma, features, meta). Every loader returns None
(with the reason in `missing`) rather than raising, so a table over old or copied run folders still
builds; what could not be read is said in the notes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.core import run_folder
from bench.core.paths import cache_root
from bench.reporting import fid_reference_columns
from bench.runs import records

REFERENCE_FOLDER = ("fid", "reference")  # bench.evaluation.metrics.fid_reference.REFERENCE_FOLDER


@dataclass
class RunFiles:
    """One finished run's stored arrays, each None when the folder (or cache) does not have it."""

    run_id: str
    names: np.ndarray | None = None  # image names, in split order
    values: dict[str, np.ndarray] = field(default_factory=dict)  # per-image metric values by key, float64 (N,)
    features: np.ndarray | None = None  # float32 (N, 2048) Inception features of the reconstructions
    reference: np.ndarray | None = None  # float32 (N, 2048) of the originals, from the reference cache
    missing: list[str] = field(default_factory=list)  # what could not be read, and why

    def same_images(self, other: RunFiles) -> bool:
        """Whether two runs were evaluated on the same images in the same order (paired data)."""
        return (self.names is not None and other.names is not None and len(self.names) == len(other.names)
                and bool(np.all(self.names == other.names)))


def read_per_image(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(names, {metric key: values}) of one per_image.npz."""
    with np.load(path, allow_pickle=False) as z:
        names = np.asarray(z["names"]).astype(str)
        values = {k: np.asarray(z[k], dtype=np.float64) for k in z.files if k != "names"}
    for k, v in values.items():
        if v.shape != names.shape:
            raise ValueError(f"{path.name}: {k} has {v.shape[0]} values for {len(names)} images")
    return names, values


def reference_entry(name: str | None, n_images: int | None = None) -> tuple[tuple[np.ndarray, ...] | None, str | None]:
    """((mu, sigma, features), None) of the FID cache entry `name` (a run's originals, a prior's
    training-split reference), or (None, why not); with `n_images`, an entry of another size is refused."""
    if not name:
        return None, "the record names no FID reference entry"
    path = cache_root().joinpath(*REFERENCE_FOLDER, name)
    if not path.is_file():
        return None, f"FID reference {name} is not in this machine's cache ({path.parent})"
    try:
        with np.load(path, allow_pickle=False) as z:
            entry = (np.asarray(z["mu"], np.float64), np.asarray(z["sigma"], np.float64),
                     np.asarray(z["features"], np.float32))
    except (OSError, ValueError, KeyError) as exc:
        return None, f"FID reference {name} unreadable ({exc})"
    if n_images is not None and len(entry[2]) != n_images:
        return None, f"FID reference {name} has {len(entry[2])} images, the record {n_images}"
    return entry, None


def reference_features(name: str | None, n_images: int) -> tuple[np.ndarray | None, str | None]:
    """(features, None) of the cache entry `name`, or (None, why not)."""
    entry, why = reference_entry(name, n_images)
    return (None if entry is None else entry[2]), why


def load_run(out: Path | str, run_id: str, record: dict[str, Any] | None = None, features: bool = True) -> RunFiles:
    """The stored arrays of run `run_id` under results folder `out`."""
    run_dir = run_folder.run_dir(out, run_id)
    got = RunFiles(run_id)
    path = run_dir / run_folder.PER_IMAGE
    if path.is_file():
        try:
            got.names, got.values = read_per_image(path)
        except (OSError, ValueError, KeyError) as exc:
            got.missing.append(f"{run_id}: unreadable {run_folder.PER_IMAGE} ({exc})")
    else:
        got.missing.append(f"{run_id}: no {run_folder.PER_IMAGE}")
    if not features:
        return got
    fpath = run_dir / run_folder.FEATURES
    if not fpath.is_file():
        return got  # perceptual metrics switched off, or a run from before features were stored
    try:
        feats = np.load(fpath, allow_pickle=False).astype(np.float32)
    except (OSError, ValueError) as exc:
        got.missing.append(f"{run_id}: unreadable {run_folder.FEATURES} ({exc})")
        return got
    if got.names is not None and len(feats) != len(got.names):
        got.missing.append(f"{run_id}: {len(feats)} feature rows for {len(got.names)} images")
        return got
    got.features = feats
    rec = record if record is not None else records.read_record(run_dir) or {}
    if fid_reference_columns.record_reference(rec) != fid_reference_columns.VAL:
        return got  # a fixed reference is not paired with the images: nothing to resample it with
    fid_entry = (rec.get("protocol") or {}).get("fid") or {}
    got.reference, why = reference_features(fid_entry.get("reference_file") if isinstance(fid_entry, dict) else None,
                                            len(feats))
    if why:
        got.missing.append(f"{run_id}: {why}")
    return got


class RunCache:
    """load_run once per run id for one results folder (a table reads each run for several columns)."""

    def __init__(self, out: Path | str) -> None:
        self.out = Path(out)
        self._runs: dict[str, RunFiles] = {}

    def get(self, run_id: str) -> RunFiles:
        if run_id not in self._runs:
            self._runs[run_id] = load_run(self.out, run_id)
        return self._runs[run_id]

