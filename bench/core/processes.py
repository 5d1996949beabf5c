"""Waiting on a child process for a file, then killing it: how the resume tests and the GPU check's
resume section interrupt a run at a known point (right after its first checkpoint is on disk)."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


class EndedFirst(RuntimeError):
    """The child exited before the file appeared."""


def wait_for_file(proc: subprocess.Popen, path: Path, timeout_s: float, poll_s: float = 0.02) -> None:
    """Return once `path` exists. Raises EndedFirst if `proc` exits first, TimeoutError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if proc.poll() is not None:
            raise EndedFirst(f"the process ended (exit {proc.returncode}) before {path.name} appeared")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path.name} did not appear within {timeout_s:.0f} s")
        time.sleep(poll_s)


def kill_hard(proc: subprocess.Popen, wait_s: float = 30) -> bool:
    """SIGKILL `proc` unless it has already exited, and reap it. True when it was still running."""
    running = proc.poll() is None
    if running:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(wait_s)
    return running


def kill_once_file_exists(proc: subprocess.Popen, path: Path, timeout_s: float) -> None:
    """SIGKILL `proc` as soon as `path` exists; on any failure to get there the child is still killed,
    so no run is left training behind a failed test."""
    try:
        wait_for_file(proc, path, timeout_s)
    finally:
        kill_hard(proc)
