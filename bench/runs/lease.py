"""The lease on a run folder: which driver trains the run now, so that two drivers on one results
folder (a resubmitted cluster job beside the first, two people) never train the same run twice.

The lease is a file in the run folder (`run_folder.LEASE`), created with O_CREAT|O_EXCL: exactly one
creator succeeds, on a local disk and on NFS (v3 and later), where `flock`/`fcntl` locks may be
missing or local to one client. It holds the holder's host, pid, driver id and start time, and a
heartbeat (the holder's wall-clock time) that the holder rewrites atomically (bench.core.atomic) while
the run lives. A lease is stale when its heartbeat is older than `STALE_S`, or at once when its
holder's process is gone from this very host; a stale lease may be taken over, and the new lease
keeps the old holder in `took_over`, which the run's record copies (`lease_taken_over`).

Staleness compares the holder's clock with the reader's: the hosts' clocks must agree to well within
`STALE_S` (NTP does). What creates, refreshes and releases leases for a grid is the driver
(bench/scheduling/claims.py, docs/scheduling.md); this module only knows one folder's file.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from bench.core import run_folder
from bench.core.atomic import write_json_atomic

Lease = dict[str, Any]

# A lease not refreshed for this long is stale and may be taken over. Long against the refresh
# interval below (a busy shared filesystem may delay a refresh by many seconds), short against a run.
STALE_S = 600.0
# How often a holder rewrites its heartbeat: a tenth of STALE_S, so that ten refreshes in a row must
# be lost before the lease is taken from a live holder. Read at use, so tests may shorten STALE_S.
REFRESH_FRACTION = 0.1


def new_driver_id() -> str:
    """A driver's id: unique per grid invocation (two drivers in one process are two holders)."""
    return uuid.uuid4().hex[:12]


def path(run_dir: Path) -> Path:
    return Path(run_dir) / run_folder.LEASE


def read(run_dir: Path) -> Lease | None:
    """The lease of a run folder; None when it has none. A lease caught between its exclusive
    creation and its first write reads as a young lease of an unknown holder (its file's mtime)."""
    p = path(run_dir)
    try:
        text = p.read_text()
        mtime = p.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        lease = json.loads(text)
        if isinstance(lease, dict) and "heartbeat" in lease:
            return lease
    except json.JSONDecodeError:
        pass
    return {"host": "?", "pid": None, "driver": "?", "started": mtime, "heartbeat": mtime}


def try_claim(run_dir: Path, driver: str, took_over: Lease | None = None) -> bool:
    """Create the lease of `run_dir` for `driver`; False when another lease exists."""
    run_dir = Path(run_dir)
    now = time.time()
    lease = {"host": socket.gethostname(), "pid": os.getpid(), "driver": driver, "started": now, "heartbeat": now}
    if took_over is not None:
        lease["took_over"] = took_over
    for _ in range(3):  # a driver that gives up its claims removes empty folders: make them again
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path(run_dir), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            return False
        except FileNotFoundError:
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(lease, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        return True
    raise FileNotFoundError(f"{run_dir} vanished three times while its lease was created")


def refresh(run_dir: Path, driver: str) -> bool:
    """Rewrite the heartbeat of `driver`'s lease (atomically: a reader sees the old or the new one);
    False when the lease is no longer this driver's (taken over while this driver was not heard)."""
    lease = read(run_dir)
    if lease is None or lease.get("driver") != driver:
        return False
    write_json_atomic(path(run_dir), {**lease, "heartbeat": time.time()})
    return True


def release(run_dir: Path, driver: str) -> None:
    """Remove `driver`'s lease (another driver's stays), and the run folder if nothing else is in it."""
    lease = read(run_dir)
    if lease is not None and lease.get("driver") == driver:
        path(run_dir).unlink(missing_ok=True)
    try:
        Path(run_dir).rmdir()  # only an empty folder: a claim whose run never started leaves nothing
    except OSError:
        pass


def stale_reason(lease: Lease, now: float | None = None) -> str | None:
    """Why `lease` may be taken over, or None while its holder counts as alive."""
    now = time.time() if now is None else now
    if lease.get("host") == socket.gethostname() and isinstance(lease.get("pid"), int) \
            and not _process_alive(lease["pid"]):
        return f"its process {lease['pid']} on this host is gone"
    age = now - float(lease.get("heartbeat") or 0.0)
    if age > STALE_S:
        return f"not refreshed for {age:.0f} s (stale after {STALE_S:g} s)"
    return None


def take_over(run_dir: Path, stale: Lease, driver: str, why: str) -> bool:
    """Replace the stale lease `stale` (as read) by one of `driver` that notes it. False when another
    driver was quicker: the rename moves the lease aside for one taker only, and a lease that is not
    the one judged stale (renewed, or already someone else's) is put back."""
    aside = path(run_dir).with_name(f".{run_folder.LEASE}.{driver}.stale")
    try:
        os.rename(path(run_dir), aside)
    except FileNotFoundError:
        return False
    moved = read_file(aside)
    if moved != stale and not (moved is None and stale.get("host") == "?"):
        try:
            os.link(aside, path(run_dir))  # put it back, unless a new lease exists already
        except OSError:
            pass
        aside.unlink(missing_ok=True)
        return False
    aside.unlink(missing_ok=True)
    note = {k: stale.get(k) for k in ("host", "pid", "driver", "started", "heartbeat")}
    return try_claim(run_dir, driver, took_over={**note, "why": why, "at": time.time()})


def read_file(p: Path) -> Lease | None:
    try:
        lease = json.loads(Path(p).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return lease if isinstance(lease, dict) else None


def taken_over(run_dir: Path) -> Lease | None:
    """The stale lease that the current lease of `run_dir` took over, or None: what the run's record
    keeps as `lease_taken_over`."""
    lease = read(run_dir)
    return None if lease is None else lease.get("took_over")


def clear_run_folder(run_dir: Path) -> None:
    """Empty a run folder to start the run over (`force`), keeping its lease: removing the lease would
    let another driver claim the run while this one trains it."""
    for entry in Path(run_dir).iterdir():
        if entry.name == run_folder.LEASE:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink(missing_ok=True)


def describe(lease: Lease) -> str:
    """'driver 3f2a9c01 (pid 4242 on node7) since 2026-12-06 14:02:11 UTC'."""
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(lease.get("started") or 0.0)))
    return f"driver {lease.get('driver')} (pid {lease.get('pid')} on {lease.get('host')}) since {since}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    return True
