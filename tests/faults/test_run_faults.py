"""Faults during a run lose nothing finished and leave nothing half-written: a train log cut
mid-line, a damaged checkpoint, SIGKILL at random moments, a full disk while a record or a table is
written."""
from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.cli.main import main
from bench.core import atomic, run_folder
from bench.runs import records
from bench.runs.config import RunConfig, resolve
from bench.runs.runner import run_one

REPO = Path(__file__).resolve().parents[2]
STEPS = 30  # smoke preset: a checkpoint every 5 steps, evaluation without Inception: seconds per run


def _cfg() -> RunConfig:
    return RunConfig(method="vqgan", preset="smoke", codebook_size=16, steps=STEPS)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return run_one(_cfg(), tmp_path_factory.mktemp("straight"), progress=False)


def _interrupt_at(step: int):
    def hook(done: int) -> None:
        if done == step:
            raise KeyboardInterrupt

    return hook


def _interrupted_run(out: Path, step: int = 15) -> Path:
    with pytest.raises(KeyboardInterrupt):
        run_one(_cfg(), out, progress=False, on_checkpoint=_interrupt_at(step))
    run_dir = run_folder.run_dir(out, resolve(_cfg()).run_id)
    assert records.read_record(run_dir) is None and (run_dir / run_folder.CHECKPOINT).exists()
    return run_dir


def test_a_train_log_cut_mid_line_resumes_and_finishes(tmp_path, uninterrupted):
    run_dir = _interrupted_run(tmp_path)
    with open(run_dir / run_folder.TRAIN_LOG, "a") as f:
        f.write('{"step": 20, "loss": 0.12')  # a kill during write() leaves half a line
    rec = run_one(_cfg(), tmp_path, progress=False)
    assert rec["status"] == "finished" and rec["resumed_from"] == 15
    lines = (run_dir / run_folder.TRAIN_LOG).read_text().splitlines()
    steps = [json.loads(line)["step"] for line in lines]  # every line parses again
    assert steps == sorted(set(steps)) and steps[-1] == STEPS
    assert rec["metrics"] == uninterrupted["metrics"]


@pytest.mark.parametrize("damage", ["cut in half", "zero bytes"])
def test_a_damaged_checkpoint_is_set_aside_and_training_restarts_from_zero(tmp_path, uninterrupted, damage, capsys):
    run_dir = _interrupted_run(tmp_path)
    ckpt = run_dir / run_folder.CHECKPOINT
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2] if damage == "cut in half" else b"")
    rec = run_one(_cfg(), tmp_path, progress=False)
    assert rec["status"] == "finished" and rec["resumed_from"] == 0
    assert "cannot be read" in rec["checkpoint_discarded"] and str(ckpt) in rec["checkpoint_discarded"]
    assert "training restarts from step 0" in capsys.readouterr().err
    assert (run_dir / (run_folder.CHECKPOINT + ".damaged")).exists()  # kept for inspection
    assert rec["metrics"] == uninterrupted["metrics"]  # the seed fixes the initial model: same result


def test_sigkill_at_random_moments_gives_the_uninterrupted_result(tmp_path, uninterrupted):
    code = ("import torch; torch.set_num_threads(1); from bench.runs.runner import run_one; "
            "from bench.runs.config import RunConfig; "
            f"run_one(RunConfig(method='vqgan', preset='smoke', codebook_size=16, steps={STEPS}), {str(tmp_path)!r}, "
            "progress=False)")
    run_dir = run_folder.run_dir(tmp_path, resolve(_cfg()).run_id)
    rng = random.Random(13)
    kills = 0
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 120
            while not (run_dir / run_folder.CHECKPOINT).exists() and proc.poll() is None:
                assert time.time() < deadline, "no checkpoint within 120 s"
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.6))  # somewhere in training, a checkpoint write or evaluation
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                kills += 1
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
        if records.read_record(run_dir) is not None:
            break
    assert kills >= 2, "the run finished before it could be killed twice"
    leftovers = [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp") or ".tmp." in p.name]
    rec = records.read_record(run_dir) or run_one(_cfg(), tmp_path, progress=False)
    assert rec["status"] == "finished" and rec["steps_done"] == STEPS
    assert rec["metrics"] == uninterrupted["metrics"]
    assert all(name.startswith(".") for name in leftovers)  # only a killed writer's hidden temp file, never a target


def _full_disk(monkeypatch):
    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", no_space)


def test_a_full_disk_while_a_record_is_written_keeps_the_previous_record(tmp_path, monkeypatch, uninterrupted):
    path = tmp_path / "record.json"
    atomic.write_json_atomic(path, uninterrupted)
    before = path.read_bytes()
    _full_disk(monkeypatch)
    with pytest.raises(OSError) as err:
        atomic.write_json_atomic(path, {**uninterrupted, "status": "failed"})
    assert err.value.errno == errno.ENOSPC
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]


def test_a_full_disk_while_tables_are_written_keeps_the_previous_tables(tmp_path, monkeypatch, capsys, uninterrupted):
    out = tmp_path / "out"
    atomic.write_json_atomic(run_folder.run_dir(out, uninterrupted["run_id"]) / run_folder.RECORD,
                             records.stored_form(uninterrupted))
    assert main(["table", "--out", str(out)]) == 0
    tables = sorted((out / "tables").iterdir())
    before = {p.name: p.read_bytes() for p in tables}
    _full_disk(monkeypatch)
    capsys.readouterr()
    assert main(["table", "--out", str(out), "--format", "md"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0]
    assert {p.name: p.read_bytes() for p in sorted((out / "tables").iterdir())} == before
