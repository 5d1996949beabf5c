"""`local`: the cells one after another in this process (for debugging: breakpoints, profilers,
plain tracebacks, per-run progress bars). No Ray."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from bench.scheduling import prepare
from bench.scheduling.backends import Report, register_backend
from bench.scheduling.gpu_fit import check_gpu_memory
from bench.scheduling.plan import Cell, run_job
from bench.scheduling.progress import Progress


@register_backend("local")
class LocalBackend:
    summary = "runs one after another in this process"

    def __init__(self, on_checkpoint: Callable[[int], None] | None = None) -> None:
        self.on_checkpoint = on_checkpoint  # run_one's hook after each checkpoint (tests inject faults with it)

    def run(self, cells: Sequence[Cell], out: Path, force: bool, progress: Progress, report: Report) -> None:
        progress.in_place = False  # the per-run bars own the terminal line
        check_gpu_memory([(cell.run, 1.0) for cell in cells])  # one run at a time: each may have the whole GPU
        prepare.warn(prepare.prepare_here(cells))
        for cell in cells:
            progress.in_flight = 1
            progress.show()
            record = run_job(cell.config, out, force=force, progress=progress.enabled,
                             on_checkpoint=self.on_checkpoint)
            progress.in_flight = 0
            report(cell, record)
