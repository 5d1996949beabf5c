"""The cells of a grid: one per distinct run, each config validated before any work starts, and the
finished ones set aside so that only the rest reach a backend."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.runs.config import ResolvedRun, RunConfig, resolve
from bench.runs.runner import finished_record, run_one

Record = dict[str, Any]


@dataclass
class Cell:
    """One run of the grid and where its record goes in the caller's list."""

    run: ResolvedRun
    indices: list[int]  # positions in the caller's list (identical configs share one run)
    record: Record | None = None  # set once the run has ended (or was found finished)

    @property
    def config(self) -> RunConfig:
        """The caller's config, which is what `run_one` takes (it says where the data is, how to run)."""
        return self.run.config

    @property
    def run_id(self) -> str:
        return self.run.run_id


def plan_cells(configs: Sequence[RunConfig]) -> list[Cell]:
    """One cell per distinct run id, in first-seen order. Every config is validated before any work
    starts, so a typo in the last one does not waste the others' time. Identical configs become one
    run: two tasks writing the same run folder would race."""
    cells: dict[str, Cell] = {}
    for i, c in enumerate(configs):
        run = resolve_job(c)
        if run.run_id in cells:
            cells[run.run_id].indices.append(i)
        else:
            cells[run.run_id] = Cell(run, [i])
    return list(cells.values())


def resolve_job(config: Any) -> Any:
    """A RunConfig resolves through bench.runs.config.resolve. Another kind of job (the evaluation of
    a released checkpoint: bench.released.job.ReleasedEval) is a config object with its own
    `resolve()` (a ResolvedRun look-alike: run_id, describe(), to_dict(), dataset, model.resolution,
    data_options()) and `run(out, force, progress)`; the backends run either through `run_job`."""
    return resolve(config) if isinstance(config, RunConfig) else config.resolve()


def run_job(config: Any, out: Path | str, force: bool = False, progress: bool = True,
            on_checkpoint: Any = None) -> Record:
    """The record of one cell's job: `run_one` for a RunConfig, the config's own `run` otherwise
    (which has no training, hence no checkpoints to hook)."""
    if isinstance(config, RunConfig):
        return run_one(config, out, force=force, progress=progress, on_checkpoint=on_checkpoint)
    return config.run(out, force=force, progress=progress)


def skip_finished(cells: Sequence[Cell], out: Path, force: bool) -> list[Cell]:
    """The cells still to run. Each finished one (unless `force`) gets its record from disk now,
    marked skipped, by the same test `run_one` makes. A failed run is still to run: `run_one` resumes
    it from its last checkpoint (`force` starts it over)."""
    todo = []
    for cell in cells:
        cell.record = None if force else finished_record(cell.run, out)
        if cell.record is None:
            todo.append(cell)
    return todo


def in_caller_order(n_configs: int, cells: Sequence[Cell]) -> list[Record]:
    """The cells' records at the positions of the configs they came from; configs whose run has no
    record (never started) are left out."""
    out: list[Record | None] = [None] * n_configs
    for cell in cells:
        for i in cell.indices:
            out[i] = cell.record
    return [r for r in out if r is not None]
