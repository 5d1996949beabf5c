"""Two `run_bench.py` drivers on one results folder, as two processes (a resubmitted cluster job beside
the first): each run is trained exactly once and both print the full table; a holder killed mid-run
(SIGKILL, on "another host") leaves a lease that goes stale, and a waiting driver takes the run over,
resumes its checkpoint and finishes it, the record noting the takeover. The same protocol in threads,
in seconds: tests/bench/scheduling/test_lease.py."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench.core import run_folder
from bench.runs import records
from bench.runs.config import RunConfig, resolve

REPO = Path(__file__).resolve().parents[2]
STEPS = 10  # smoke: a log line and a checkpoint every 5 steps
GRID = ["--preset", "smoke", "--no-ray", "--codebook-sizes", "16", "--steps", str(STEPS), "--no-progress"]
pytestmark = pytest.mark.slow  # four smoke runs in four processes: minutes on 2 busy cores


def _run_dir(out: Path, method: str) -> Path:
    return run_folder.run_dir(out, resolve(RunConfig(method=method, preset="smoke", codebook_size=16,
                                                     steps=STEPS)).run_id)


def _logged_steps(run_dir: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run_dir / run_folder.TRAIN_LOG).read_text().splitlines()]


def _driver(code: str) -> list[str]:
    """A driver process whose module constants the test sets before the CLI runs (`code`), then `main`."""
    return [sys.executable, "-c", "import sys, torch; torch.set_num_threads(1)\n" + code +
            "\nfrom bench.cli.main import main\nsys.exit(main(sys.argv[1:]))"]


def test_two_drivers_started_at_once_train_each_run_once_and_both_print_the_table(tmp_path):
    argv = [*_driver(""), *GRID, "--methods", "vqgan,fsq", "--out", str(tmp_path)]
    procs = [subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    for method in ("vqgan", "fsq"):
        steps = _logged_steps(_run_dir(tmp_path, method))
        assert steps == [5, 10], steps  # each logged step once: trained once
        rec = records.read_record(_run_dir(tmp_path, method))
        assert rec["status"] == "finished" and not (_run_dir(tmp_path, method) / run_folder.LEASE).exists()
        trained = sum(out.count(f"finished {method} on photos K=16 seed=0 in ") for out, _ in outputs)
        assert trained == 1  # the other driver printed it as trained elsewhere, or found it finished
    for out, _ in outputs:
        table = out[out.index("Reconstruction on photos"):]
        assert "| vqgan " in table and "| fsq " in table


def test_a_killed_holder_is_taken_over_once_its_lease_is_stale(tmp_path):
    run_dir = _run_dir(tmp_path, "vqgan")
    # The holder says it is on another host (so only its heartbeat can tell that it died), refreshes
    # every 0.3 s, and stops after its first checkpoint until it is killed.
    holder = subprocess.Popen(
        [*_driver("import socket; socket.gethostname = lambda: 'other-node'\n"
                  "import bench.runs.lease as lease; lease.STALE_S = 3.0\n"
                  "import time, bench.scheduling.backends.local as local\n"
                  "local.LocalBackend.__init__.__defaults__ = (lambda step: time.sleep(3600),)"),
         *GRID, "--methods", "vqgan", "--out", str(tmp_path)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    waiter = None
    try:
        deadline = time.time() + 300
        while not (run_dir / run_folder.CHECKPOINT).exists():
            assert holder.poll() is None and time.time() < deadline, "the holder made no checkpoint"
            time.sleep(0.1)
        assert json.loads((run_dir / run_folder.LEASE).read_text())["host"] == "other-node"
        waiter = subprocess.Popen(
            [*_driver("import bench.runs.lease as lease, bench.scheduling.claims as claims\n"
                      "lease.STALE_S = 3.0; claims.POLL_S = 0.2"),
             *GRID, "--methods", "vqgan,fsq", "--out", str(tmp_path)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        err_lines: list[str] = []
        reader = threading.Thread(target=lambda: err_lines.extend(waiter.stderr), daemon=True)
        reader.start()
        while not any("claimed by driver" in line for line in err_lines):
            assert waiter.poll() is None and time.time() < deadline + 300, "".join(err_lines)[-2000:]
            time.sleep(0.1)
        assert "on other-node" in "".join(err_lines)
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(30)
        out = waiter.stdout.read()
        assert waiter.wait(600) == 0, "".join(err_lines)[-2000:]
        reader.join(10)
    finally:
        for proc in (holder, waiter):
            if proc is not None and proc.poll() is None:
                proc.kill()
    err = "".join(err_lines)
    assert "waiting for 1 run(s) that other drivers are training" in err
    assert "took over the lease of driver" in err and "not refreshed for" in err
    rec = records.read_record(run_dir)
    assert rec["status"] == "finished" and rec["resumed_from"] == 5 and rec["steps_done"] == STEPS
    assert rec["lease_taken_over"]["host"] == "other-node" and "not refreshed for" in rec["lease_taken_over"]["why"]
    assert _logged_steps(run_dir) == [5, 10] and not (run_dir / run_folder.LEASE).exists()
    assert records.read_record(_run_dir(tmp_path, "fsq"))["status"] == "finished"  # the rest of its grid
    assert "| vqgan " in out[out.index("Reconstruction on photos"):]
