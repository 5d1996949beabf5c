"""Result records: `OUT/runs/<run_id>/record.json`, one per run, written atomically.

`RunRecord` is the one shape of a record, finished or failed: both carry every key (a failed run's
metrics are all None), so the code that reads records never branches on which keys exist. It
serialises to the JSON that records have always had; keys it does not know (from older or newer
versions) are kept in `extra` and written back unchanged (bench.core.json_record, shared with the
prior's record).
"""
from __future__ import annotations

import functools
import json
import platform
import subprocess
import time
import traceback as tb
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from bench.core import run_folder
from bench.core.json_record import JsonRecord, read_json_record
from bench.core.paths import REPO_ROOT
from bench.evaluation.metrics import keys

FINISHED, FAILED = "finished", "failed"
VERSION = "0.1.0"
# Written by the driver only, never stored: a record read back from a folder it skipped, where it ran,
# and the other driver that trained it while this one waited (bench.scheduling.claims).
DRIVER_KEYS = ("skipped", "placement", "persisted", "claimed_by")


@dataclass
class RunRecord(JsonRecord):
    NOT_STORED = DRIVER_KEYS

    run_id: str
    status: str  # FINISHED | FAILED
    config: dict[str, Any]  # ResolvedRun.to_dict()
    error: str | None = None  # "<ExceptionType>: <message>" of a failed run
    traceback: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)  # flat; every key of the evaluator, None if not computed
    protocol: dict[str, Any] = field(default_factory=dict)  # how the metrics were measured
    versions: dict[str, Any] = field(default_factory=dict)
    device: str | None = None
    torch_threads: int | None = None  # CPU results differ in the last digits with it (reduction order)
    compiled: bool | None = None
    deterministic: bool | None = None  # --deterministic (bench/training/determinism.py); None in older records
    data_root: str | None = None
    data: dict[str, Any] = field(default_factory=dict)  # per split: images read, bad files skipped, upscaled
    wall_s: float | None = None
    tokens: int | None = None  # code positions per image (the latent grid's H x W)
    indices_per_image: int | None = None  # codes per image: positions x indices per position (VQCT: top_k + 1)
    # The image's bit budget: positions x sum over index levels of log2(that level's codebook size)
    bits_per_image: float | None = None
    bits_per_pixel: float | None = None  # bits_per_image / (resolution x resolution)
    bits_budget: float | None = None  # the --bits-per-image B that chose K (RunConfig.bits_budget); None without
    optimization: dict[str, Any] = field(default_factory=dict)  # global batch, micro-batch, workers, accumulation, lr
    preset_source: str | None = None  # "given", or why this machine's default preset was taken
    steps_done: int | None = None
    resumed_from: int | None = None
    checkpoint_discarded: str | None = None  # a damaged checkpoint set aside (training restarted from 0), and why
    # The errors of earlier attempts that failed (oldest first): this attempt resumed their checkpoint
    resumed_after_failure: list[str] | None = None
    lease_taken_over: dict[str, Any] | None = None  # the stale lease of a driver that this attempt took over
    train_s: float | None = None
    perceptual: str | None = None  # the perceptual network of the training loss, by name
    final_train_logs: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know, kept as they were

    @classmethod
    def failed(cls, run_id: str, config: dict[str, Any], error: str, traceback: str | None = None,
               metric_keys: tuple[str, ...] = (), **fields: Any) -> RunRecord:
        """A failed run: the same keys as a finished one, every metric None."""
        return cls(run_id, FAILED, config, error=error, traceback=traceback,
                   metrics={k: None for k in metric_keys}, versions=fields.pop("versions", None) or versions(),
                   **fields)

    @classmethod
    def from_exception(cls, run_id: str, config: dict[str, Any], exc: BaseException, **fields: Any) -> RunRecord:
        """The failed record of a job that raised `exc`; call it inside the `except` block, whose traceback
        it keeps. Trained runs and released-checkpoint evaluations fail the same way."""
        return cls.failed(run_id, config, f"{type(exc).__name__}: {exc}", tb.format_exc(),
                          metric_keys=keys.RECORD_METRICS, **fields)

    def close(self, splits: dict[str, Any], started: float, out: Path | str) -> None:
        """Finish and write the record of a job that began at `started` (time.perf_counter()): what each
        dataset split read (images, bad files skipped), the wall time, then the atomic write."""
        self.data = {name: ds.stats() for name, ds in splits.items()}
        self.wall_s = time.perf_counter() - started
        self.write(out)

    def write(self, out: Path | str) -> Path:
        return self.write_to(run_folder.run_dir(out, self.run_id) / run_folder.RECORD)


def read_record(run_dir: Path) -> dict[str, Any] | None:
    """The record of a run folder as a dict, or None when it has none (or only a torn one, which a
    record written atomically never is: such a file is treated as absent and the run is redone)."""
    return read_json_record(Path(run_dir) / run_folder.RECORD)


def iter_records(out: Path) -> Iterator[dict[str, Any]]:
    base = run_folder.runs_dir(out)
    if base.is_dir():
        for run_dir in sorted(base.iterdir()):
            record = read_record(run_dir)
            if record is not None:
                yield record


def stored_form(record: dict[str, Any]) -> dict[str, Any]:
    """What record.json holds: the record without the driver's annotations, through JSON."""
    clean = {k: v for k, v in record.items() if k not in DRIVER_KEYS}
    return json.loads(json.dumps(clean, sort_keys=True, default=str))


@functools.lru_cache(maxsize=1)
def versions() -> dict[str, str | None]:
    import numpy
    import torch

    try:
        git = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        git, dirty = None, None
    return {"vqbench": VERSION, "git": git, "git_dirty": dirty, "python": platform.python_version(),
            "torch": torch.__version__, "numpy": numpy.__version__, "platform": platform.platform()}
