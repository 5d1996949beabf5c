"""Records that the driver writes or makes itself, for backends whose workers may run elsewhere:
a worker's record copied into the driver's results folder, and a failed record for a run that could
not record itself (its worker died, or it was cancelled)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.core import run_folder
from bench.core.atomic import write_json_atomic
from bench.runs import records
from bench.runs.records import RunRecord, stored_form
from bench.runs.runner import earlier_failures
from bench.scheduling.plan import Cell

Record = dict[str, Any]


def persist(record: Record, out: Path) -> None:
    """Make sure the driver's results folder holds the record. On one machine, or a cluster sharing
    the results folder, the worker already wrote it; on nodes with their own disks it did not, and
    the table at the end reads the driver's folder. A failed record that replaces an earlier failed
    one keeps the earlier errors (`resumed_after_failure`)."""
    path = run_folder.runs_dir(out) / record["run_id"] / run_folder.RECORD
    stored = stored_form(record)
    existing = records.read_record(path.parent)
    if existing == stored:
        return
    if stored.get("status") == records.FAILED and not stored.get("resumed_after_failure"):
        # A failure the driver recorded itself (the run could not) replaces the run's earlier failed
        # record: the earlier errors stay visible, as in the records run_one writes.
        stored["resumed_after_failure"] = earlier_failures(existing)
    write_json_atomic(path, stored)


def failed_record(cell: Cell, error: str, tb: str | None = None) -> Record:
    """A failure `run_one` could not record itself: its worker died, or it was cancelled."""
    from bench.evaluation.metrics import keys

    # A job kind whose records carry more top-level keys (a released checkpoint's `source`) says which.
    return RunRecord.failed(cell.run_id, cell.run.to_dict(), error, tb, metric_keys=keys.RECORD_METRICS,
                            data_root=cell.config.data_root, extra=cell.run.record_keys()).to_json()
