"""`run_grid`: the driver of a grid. It validates every config, sets finished runs aside, hands the
rest to a backend (bench/scheduling/backends: `local`, `ray`, ...), and owns what is the same for
every backend: the leases that keep two drivers on one results folder from training a run twice
(bench/scheduling/claims.py), the records in the caller's order, the `on_record` callback, the
status line's counts, and the summary of what ended when Ctrl-C stops the grid.

The trainer and evaluator know nothing of what is here: every backend runs the same `run_one`, and
everything that makes a grid safe to stop and start again lives there (finished runs are skipped,
failures are records, an interrupted run leaves its checkpoint and no record).
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.core.writable import require_writable_folder
from bench.runs.config import RunConfig
from bench.runs.runner import DEFAULT_OUT
from bench.scheduling import backends
from bench.scheduling.claims import Claims
from bench.scheduling.plan import Cell, in_caller_order, plan_cells, skip_finished
from bench.scheduling.progress import Progress

Record = dict[str, Any]
OnRecord = Callable[[Record], None]


def run_grid(configs: Sequence[RunConfig], out: Path | str = DEFAULT_OUT, force: bool = False, progress: bool = True,
             on_record: OnRecord | None = None, backend: str = "ray", wait: bool = True,
             **backend_options: Any) -> list[Record]:
    """Run every config with `backend` and return the records in the order of `configs`.

    `on_record` sees each record as its run ends (finished runs skipped at the start first).
    `backend_options` go to the backend's constructor (see bench/scheduling/backends); one it does
    not take is a TypeError. Nothing starts before the backend, its options and every config are
    checked. Runs that another driver is training (bench.scheduling.claims) are not trained here:
    with `wait` their records are awaited at the end (and a stale one is taken over and trained),
    without it they are left out of the returned records."""
    executor = backends.create(backend, **backend_options)
    out = Path(out)
    cells = plan_cells(configs)
    require_writable_folder(out)  # after the configs, before anything runs (a second invocation's refusal too)
    display = Progress(len(cells), progress)

    def report(cell: Cell, record: Record, show: bool = True) -> None:
        cell.record = record  # first: a Ctrl-C raised by on_record still counts this run as ended
        display.count(record)
        display.clear()
        if on_record is not None:
            on_record(record)
        if show:
            display.show(force=True)

    todo = skip_finished(cells, out, force)
    for cell in cells:
        if cell.record is not None:
            report(cell, cell.record, show=False)
    if not todo:
        display.show(force=True)
        display.close()
        return in_caller_order(len(configs), cells)
    claims = Claims(out, force)

    def ended(cell: Cell, record: Record, show: bool = True) -> None:
        # Released after on_record, which may still work in the run's folder (an in-process prior
        # trained on the tokenizer, bench/generation/schedule.py), and whatever it raises.
        try:
            report(cell, record, show)
        finally:
            claims.release(cell)

    try:
        mine, theirs = claims.claim(todo, ended)
        while True:
            if mine:
                executor.run(mine, out, force, display, ended)
            if not theirs or not wait:
                break
            display.clear()
            mine = claims.wait(theirs, ended)  # taken over from a stale holder: resumed, never forced
            force = False
            taken = {c.run_id for c in mine}
            theirs = [c for c in theirs if c.record is None and c.run_id not in taken]
        if not wait and theirs:
            display.clear()
            print(f"--no-wait: left {len(theirs)} run(s) that other drivers are training; their records reach the "
                  "table once they end (run_bench.py table)", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        display.clear()
        print_interrupted(cells)
        raise
    finally:
        claims.close()
        display.close()
    return in_caller_order(len(configs), cells)


def print_interrupted(cells: Sequence[Cell]) -> None:
    """After Ctrl-C: which runs ended in this invocation (they are saved) and how to resume the rest."""
    done = [c for c in cells if c.record is not None and not c.record.get("skipped")]
    left = [c for c in cells if c.record is None]
    lines = [f"interrupted: {len(done)} run(s) ended in this invocation and are saved, {len(left)} did not end."]
    lines += [f"  {c.record['status']:<8} {c.run.describe()} ({c.run_id})" for c in done]  # type: ignore[index]
    if left:
        lines.append("  Run the same command again: finished runs are skipped and interrupted ones resume from "
                     "their last checkpoint.")
    print("\n".join(lines), file=sys.stderr, flush=True)
