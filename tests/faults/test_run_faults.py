"""Faults during a run lose nothing finished and leave nothing half-written: a train log cut
mid-line, a damaged checkpoint, SIGKILL at random moments, a full disk while a record or a table is
written."""
from __future__ import annotations

import errno
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.cli.main import main
from bench.core import atomic, run_folder
from bench.core.processes import EndedFirst, kill_hard, wait_for_file
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
            wait_for_file(proc, run_dir / run_folder.CHECKPOINT, timeout_s=120)
            time.sleep(rng.uniform(0.0, 0.6))  # somewhere in training, a checkpoint write or evaluation
        except EndedFirst:
            pass  # it finished (or resumed to the end) before the file check: nothing to kill
        finally:
            kills += kill_hard(proc)
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


# A failed run keeps its folder: the next invocation resumes it from the last checkpoint (issue 25).

def _fail_at(step: int, exc: Exception):
    def hook(done: int) -> None:
        if done == step:
            raise exc

    return hook


def test_a_failed_run_resumes_from_its_checkpoint_and_keeps_the_earlier_error(tmp_path, uninterrupted):
    failed = run_one(_cfg(), tmp_path, progress=False, on_checkpoint=_fail_at(15, RuntimeError("transient")))
    run_dir = run_folder.run_dir(tmp_path, failed["run_id"])
    assert failed["status"] == "failed" and failed["error"] == "RuntimeError: transient"
    assert (run_dir / run_folder.CHECKPOINT).exists()  # kept for the next invocation
    rec = run_one(_cfg(), tmp_path, progress=False)
    assert rec["status"] == "finished" and rec["resumed_from"] == 15 and rec["steps_done"] == STEPS
    assert rec["resumed_after_failure"] == ["RuntimeError: transient"]
    assert records.read_record(run_dir) == records.stored_form(rec)  # the failed record was replaced
    assert rec["metrics"] == uninterrupted["metrics"]  # resuming a failed run loses nothing


def _step_failing_at(monkeypatch, step: int, exc: Exception, seen: list[int] | None = None) -> None:
    """Every training step from now on raises `exc` at `step` (counted from 0), the same on every attempt."""
    from bench.training.step import TrainStep

    real_pass = getattr(TrainStep._generator_pass, "unpatched", TrainStep._generator_pass)  # no stacking

    def generator_pass(self, x, at, gan_on):
        if seen is not None:
            seen.append(at)
        if at == step:
            raise exc
        return real_pass(self, x, at, gan_on)

    generator_pass.unpatched = real_pass
    monkeypatch.setattr(TrainStep, "_generator_pass", generator_pass)


def test_a_run_failing_every_time_fails_again_from_its_checkpoint_and_force_starts_over(tmp_path, monkeypatch):
    _step_failing_at(monkeypatch, 22, ValueError("bad value"))
    first = run_one(_cfg(), tmp_path, progress=False)  # checkpoint at 20 steps, then the error in step 22
    seen: list[int] = []
    _step_failing_at(monkeypatch, 22, ValueError("bad value"), seen)
    second = run_one(_cfg(), tmp_path, progress=False)
    assert first["status"] == second["status"] == "failed" and second["error"] == "ValueError: bad value"
    assert seen == [20, 21, 22]  # resumed from the step-20 checkpoint: two steps redone before the error
    assert second["resumed_after_failure"] == ["ValueError: bad value"]
    third = run_one(_cfg(), tmp_path, progress=False)
    assert third["resumed_after_failure"] == ["ValueError: bad value"] * 2  # every earlier attempt, oldest first
    seen.clear()
    _step_failing_at(monkeypatch, 1, ValueError("stop early"), seen)
    forced = run_one(_cfg(), tmp_path, force=True, progress=False)
    assert seen == [0, 1] and forced["resumed_after_failure"] is None  # started over: the checkpoint went too


def test_a_failure_before_training_fails_again_in_seconds(tmp_path, monkeypatch):
    import bench.training.step

    def bad_build(run):
        raise ValueError("option x cannot be built")  # what a method's constructor says of a bad option

    monkeypatch.setattr(bench.training.step, "build_model", bad_build)
    first = run_one(_cfg(), tmp_path, progress=False)
    again = run_one(_cfg(), tmp_path, progress=False)
    assert first["status"] == again["status"] == "failed" and again["resumed_after_failure"] == [first["error"]]
    assert again["wall_s"] < 60  # datasets listed, nothing trained or evaluated (measured: about 1 s here)


_TORCH_OOM = ("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB of which "
              "512.00 MiB is free. Including non-PyTorch memory, this process has 78.66 GiB memory in use.")


def test_out_of_memory_in_a_step_names_preset_micro_batch_and_memory_and_the_run_resumes(tmp_path, monkeypatch,
                                                                                         uninterrupted):
    import torch

    from bench.training.step import TrainStep

    real_pass = TrainStep._generator_pass

    def out_of_memory_at_17(self, x, step, gan_on):
        if step == 17:
            raise torch.OutOfMemoryError(_TORCH_OOM)
        return real_pass(self, x, step, gan_on)

    monkeypatch.setattr(TrainStep, "_generator_pass", out_of_memory_at_17)
    failed = run_one(_cfg(), tmp_path, progress=False)
    error = failed["error"]
    assert failed["status"] == "failed" and "\n" not in error
    assert error.startswith("OutOfMemoryError: out of memory on cpu in training with preset 'smoke', a micro-batch "
                            "of 8 images at 16 px")
    assert "torch tried to allocate 2.00 GiB" in error and "79.19 GiB in all, 0.50 GiB free" in error
    assert "--workers-per-run 2: 4 images per forward" in error and "smaller micro_batch" in error
    run_dir = run_folder.run_dir(tmp_path, failed["run_id"])
    assert (run_dir / run_folder.CHECKPOINT).exists()
    monkeypatch.setattr(TrainStep, "_generator_pass", real_pass)
    rec = run_one(_cfg(), tmp_path, progress=False)
    assert rec["status"] == "finished" and rec["resumed_from"] == 15 and rec["resumed_after_failure"] == [error]
    assert rec["metrics"] == uninterrupted["metrics"]
