"""One process holding one folder's lease (bench.runs.lease) while it works there: claimed, kept alive by
a heartbeat thread, released at the end whatever happens.

A grid's tokenizer runs are claimed by their driver (bench.scheduling.claims), which lives as long as
every backend's workers. A prior is different: it is started from a driver's callback, in the driver or
in a Ray task, once its tokenizer has a record, so it is the prior's own process that holds its folder.
A Ray task dies with its driver, and a lease whose process is gone from this host is stale at once, so
nothing is held for a dead driver; on another host the heartbeat stops and the lease goes stale after
`lease.STALE_S`.
"""
from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.runs import lease

# How often a process waiting for another holder looks at the folder again.
POLL_S = 5.0


def claim(folder: Path, driver: str, label: str, poll_s: float | None = None) -> lease.Lease | None:
    """Take `folder`'s lease for `driver`, waiting while a live holder has it and taking over a stale
    one. Returns the stale lease taken over, else None. Says once on stderr whom it waits for."""
    said = False
    while True:
        if lease.try_claim(folder, driver):
            return None
        current = lease.read(folder)
        if current is None:
            continue  # released between the two calls
        why = lease.stale_reason(current)
        if why is not None:
            if lease.take_over(folder, current, driver, why):
                print(f"{label}: took over the lease of {lease.describe(current)}: {why}", file=sys.stderr, flush=True)
                return current
            continue
        if not said:
            print(f"{label}: held by {lease.describe(current)}; waiting for it", file=sys.stderr, flush=True)
            said = True
        time.sleep(POLL_S if poll_s is None else poll_s)


@contextmanager
def hold(folder: Path, label: str, poll_s: float | None = None) -> Iterator[lease.Lease | None]:
    """Hold `folder`'s lease for the block (see `claim`; yields the stale lease taken over, or None)."""
    folder = Path(folder)
    driver = lease.new_driver_id()
    took_over = claim(folder, driver, label, poll_s)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(lease.STALE_S * lease.REFRESH_FRACTION):
            if not lease.refresh(folder, driver):
                return  # taken over while this process was not heard: the other holder owns it now

    thread = threading.Thread(target=beat, name=f"lease:{folder.name}", daemon=True)
    thread.start()
    try:
        yield took_over
    finally:
        stop.set()
        thread.join()
        lease.release(folder, driver)
