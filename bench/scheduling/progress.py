"""The grid's status line: `grid: 3/8 done (1 failed, 2 skipped) | 2 running, 3 pending | 1m20s
elapsed, ETA 2m10s`. The driver counts records into it; a backend says how many runs are in flight
and how many of those can run at once."""
from __future__ import annotations

import sys
import time
from typing import Any

from bench.runs import records


class Progress:
    """Rewritten in place on a terminal, one line per change otherwise (logs). A backend whose runs
    draw their own progress bars sets `in_place = False`, since the bars own the terminal line.

    "running" is the number of runs in flight that fit the cluster at once (`slots`); the rest of the
    in-flight runs wait in the backend's queue. The ETA is the remaining runs times the mean time per
    completed run of this invocation (runs completed concurrently count in parallel, so it is wall
    time, not run time)."""

    def __init__(self, total: int, enabled: bool, stream: Any = None, in_place: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.in_place = self.stream.isatty() if in_place is None else in_place
        self.total, self.finished, self.failed, self.skipped, self.in_flight, self.slots = total, 0, 0, 0, 0, 1
        self.t0 = time.monotonic()
        self.completed_here = 0
        self._shown = ""

    def line(self) -> str:
        done = self.finished + self.failed
        running = min(self.in_flight, self.slots)
        pending = self.total - done - running
        elapsed = time.monotonic() - self.t0
        remaining = self.total - done
        if remaining == 0:
            eta = "done"
        elif self.completed_here:
            eta = "ETA " + duration(elapsed / self.completed_here * remaining)
        else:
            eta = "ETA ?"
        extra = ", ".join(x for x in (f"{self.failed} failed" if self.failed else "",
                                      f"{self.skipped} skipped" if self.skipped else "") if x)
        return (f"grid: {done}/{self.total} done" + (f" ({extra})" if extra else "")
                + f" | {running} running, {pending} pending | {duration(elapsed)} elapsed, {eta}")

    def show(self, force: bool = False) -> None:
        if not self.enabled:
            return
        text = self.line()
        if self.in_place:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
        elif force or text.split(" | ")[:2] != self._shown.split(" | ")[:2]:
            self.stream.write(text + "\n")
            self.stream.flush()
        self._shown = text

    def clear(self) -> None:
        if self.enabled and self.in_place and self._shown:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def count(self, record: dict[str, Any]) -> None:
        if record.get("skipped"):
            self.skipped += 1
            self.finished += 1
            return
        self.completed_here += 1
        if record.get("status") == records.FINISHED:
            self.finished += 1
        else:
            self.failed += 1

    def close(self) -> None:
        if self.enabled and self.in_place and self._shown:
            self.stream.write("\n")
            self.stream.flush()


def duration(seconds: float) -> str:
    """`45s`, `4m10s`, `2h05m`: the status line's durations."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
