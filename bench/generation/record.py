"""The record of a prior run: `OUT/priors/<prior_id>/record.json`, written atomically, one shape for
every status (as bench.runs.records.RunRecord, through the same bench.core.json_record): every metric
key is present, None when not computed.

It links to its tokenizer (`tokenizer.run_id`, with the tokenizer's rFID copied in so a table can put
gFID beside rFID without opening two files) and carries the prior's whole config, its protocol (token
layout, sampling, reference set, how each metric was computed or why not) and the usual context.

Statuses: "finished", "failed" (the prior itself failed: its error is here), and "skipped" (the
tokenizer run has no finished record, so there is nothing to model; not a failure of the prior).
Only a finished record is final: a later call redoes a failed or skipped one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.core.json_record import JsonRecord, read_json_record
from bench.generation import folder
from bench.generation.metrics import METRIC_KEYS

FINISHED, FAILED, SKIPPED = "finished", "failed", "skipped"
KIND = "prior"  # tells a prior record from a tokenizer record when both are read as JSON


@dataclass
class PriorRecord(JsonRecord):
    NOT_STORED = ("skipped",)  # added by run_prior to a finished record it did not redo

    prior_id: str
    status: str
    tokenizer: dict[str, Any]  # run_id, run_dir, method, dataset, codebook_size, seed, preset, checkpoint, rfid
    config: dict[str, Any]  # PriorConfig.to_dict()
    kind: str = KIND
    error: str | None = None
    traceback: str | None = None
    metrics: dict[str, Any] = field(default_factory=lambda: {k: None for k in METRIC_KEYS})
    protocol: dict[str, Any] = field(default_factory=dict)
    layout: dict[str, Any] = field(default_factory=dict)  # TokenLayout.describe()
    conditional: bool | None = None
    num_classes: int | None = None
    label_names: list[str] | None = None
    parameters: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # fields changed from the preset
    versions: dict[str, Any] = field(default_factory=dict)
    device: str | None = None
    torch_threads: int | None = None
    deterministic: bool = False  # the CUDA deterministic mode was on (bench.training.determinism)
    gpu_memory_fraction: float | None = None  # the GPU share this prior was capped to (--gpus-per-run < 1)
    lease_taken_over: dict[str, Any] | None = None  # the stale lease of an earlier holder, taken over
    steps_done: int | None = None
    resumed_from: int | None = None
    checkpoint_discarded: str | None = None
    final_train_logs: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage: tokens, train, sample, metrics
    wall_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know

    def write(self, out: Path | str) -> Path:
        return self.write_to(folder.prior_dir(out, self.prior_id) / folder.RECORD)


def read_prior_record(prior_dir: Path | str) -> dict[str, Any] | None:
    """The record of a prior folder, or None when it has none (or a torn one)."""
    return read_json_record(Path(prior_dir) / folder.RECORD)


def iter_prior_records(out: Path | str):
    """Every prior record under OUT/priors/, by prior id."""
    base = folder.priors_dir(out)
    if base.is_dir():
        for d in sorted(base.iterdir()):
            rec = read_prior_record(d)
            if rec is not None:
                yield rec
