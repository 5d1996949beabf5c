"""A driver's leases on the runs of its grid (bench.runs.lease; docs/scheduling.md, "Two drivers on
one results folder"): claimed before the backend sees them, kept alive by one heartbeat thread while
the driver lives, released as each run ends and, whatever happens, when the grid ends.

The driver, not the process that trains, holds the lease: it is the one process that lives exactly
as long as its runs on every backend (a Ray task's or a Ray Train group's workers die with their
driver), it keeps the lease across the retries of a lost worker, and no backend needs a line for it.
"""
from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.core import run_folder
from bench.runs import lease, records
from bench.runs.runner import finished_record
from bench.scheduling.plan import Cell

Record = dict[str, Any]
# How often a driver waiting for other drivers' runs looks at their folders.
POLL_S = 5.0


class Claims:
    """The leases one grid invocation holds under `out`."""

    def __init__(self, out: Path, force: bool) -> None:
        self.out, self.force = Path(out), force
        self.driver = lease.new_driver_id()
        self.held: dict[str, Path] = {}  # run id -> run folder
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.seen: dict[str, Record | None] = {}  # run id -> its record when another driver was found holding it
        self.holders: dict[str, str] = {}  # run id -> who held it then (lease.describe)
        self.created = _missing_folders(run_folder.runs_dir(out))  # removed at the end if still empty

    def claim(self, cells: Sequence[Cell], report: Callable[[Cell, Record], None]) -> tuple[list[Cell], list[Cell]]:
        """(the cells this driver now holds, those another driver holds). A cell that another driver
        finished meanwhile is reported (skipped) instead. One line per cell held elsewhere."""
        mine, theirs = [], []
        for cell in cells:
            outcome = self._claim_one(cell)
            if outcome == "mine":
                done = None if self.force else finished_record(cell.run, self.out)
                if done is not None:  # finished by another driver between the plan and this claim
                    self.release(cell)
                    report(cell, done)
                else:
                    mine.append(cell)
            else:
                self.seen[cell.run_id] = records.read_record(self._dir(cell))
                self.holders[cell.run_id] = outcome
                print(f"{cell.run.describe()} ({cell.run_id}): claimed by {outcome}; not trained here",
                      file=sys.stderr, flush=True)
                theirs.append(cell)
        return mine, theirs

    def wait(self, cells: Sequence[Cell], report: Callable[[Cell, Record], None]) -> list[Cell]:
        """Poll the runs other drivers hold until each has ended (its record is reported, marked
        `claimed_by`) or has become this driver's to run (its lease went stale and was taken over, or
        was released without a new record: an interrupted holder). Returns the latter."""
        left = [c for c in cells if c.record is None]
        if left:
            print(f"waiting for {len(left)} run(s) that other drivers are training (--no-wait leaves them)",
                  file=sys.stderr, flush=True)
        to_run: list[Cell] = []
        while left:
            for cell in list(left):
                current = lease.read(self._dir(cell))
                if current is not None and lease.stale_reason(current) is None:
                    continue
                if current is None:
                    record = records.read_record(self._dir(cell))
                    finished = record is not None and record.get("status") == records.FINISHED
                    if finished or (record is not None and record != self.seen.get(cell.run_id)):
                        # It ended in the other driver: its record, finished or failed, is this grid's too
                        # (a failed one is resumed by the next invocation, as any failed run).
                        left.remove(cell)
                        report(cell, {**record, "skipped": finished, "claimed_by": self.holders[cell.run_id]})
                        continue
                if self._claim_one(cell) == "mine":
                    left.remove(cell)
                    done = None if self.force else finished_record(cell.run, self.out)
                    if done is not None:  # a third driver finished it meanwhile
                        self.release(cell)
                        report(cell, {**done, "claimed_by": self.holders[cell.run_id]})
                    else:
                        to_run.append(cell)
            if to_run:
                return to_run  # train these now; the driver calls wait again for the rest
            if left:
                time.sleep(POLL_S)
        return to_run

    def release(self, cell: Cell) -> None:
        with self.lock:
            run_dir = self.held.pop(cell.run_id, None)
        if run_dir is not None:
            lease.release(run_dir, self.driver)

    def close(self) -> None:
        """Release every lease still held (Ctrl-C, an error, a backend that refused to start) and
        the folders the claims created that stayed empty."""
        self.stop.set()
        with self.lock:
            held, self.held = self.held, {}
        for run_dir in held.values():
            lease.release(run_dir, self.driver)
        for folder in self.created:  # innermost first; one another driver filled meanwhile stays
            try:
                folder.rmdir()
            except OSError:
                pass

    def _dir(self, cell: Cell) -> Path:
        return run_folder.run_dir(self.out, cell.run_id)

    def _claim_one(self, cell: Cell) -> str:
        """"mine" when this driver now holds the cell's lease, else the holder as one phrase."""
        run_dir = self._dir(cell)
        while True:
            if lease.try_claim(run_dir, self.driver):
                return self._hold(cell)
            current = lease.read(run_dir)
            if current is None:
                continue  # released between the two calls: try again
            why = lease.stale_reason(current)
            if why is None:
                return lease.describe(current)
            if lease.take_over(run_dir, current, self.driver, why):
                print(f"{cell.run.describe()} ({cell.run_id}): took over the lease of {lease.describe(current)}: "
                      f"{why}; its checkpoint is resumed", file=sys.stderr, flush=True)
                return self._hold(cell)

    def _hold(self, cell: Cell) -> str:
        with self.lock:
            self.held[cell.run_id] = self._dir(cell)
        if self.thread is None:
            self.thread = threading.Thread(target=self._heartbeat, name="vqbench-lease-heartbeat", daemon=True)
            self.thread.start()
        return "mine"

    def _heartbeat(self) -> None:
        while not self.stop.wait(lease.STALE_S * lease.REFRESH_FRACTION):
            with self.lock:
                run_ids = list(self.held)
            for run_id in run_ids:
                # Under the lock, so that a release never runs between a refresh's read and its write:
                # the write would bring back the lease of a run that has ended.
                with self.lock:
                    run_dir = self.held.get(run_id)
                    if run_dir is None:
                        continue
                    try:
                        kept = lease.refresh(run_dir, self.driver)
                    except OSError as exc:  # a filesystem hiccup: the next beat tries again, well before stale
                        print(f"warning: lease of {run_id} not refreshed: {exc}", file=sys.stderr, flush=True)
                        continue
                    if not kept:
                        self.held.pop(run_id, None)
                if not kept:
                    print(f"warning: the lease of {run_id} was taken over by another driver (this one was not "
                          f"heard for {lease.STALE_S:g} s); two drivers may now train it", file=sys.stderr, flush=True)


def _missing_folders(folder: Path) -> list[Path]:
    """`folder` and its missing parents, innermost first: what claiming a run folder creates."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing
