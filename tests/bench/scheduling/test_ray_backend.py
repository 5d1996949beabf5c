"""The grid through Ray on this machine: every record, the same numbers as in-process, failures
recorded and not retried, preparation once in the driver, a killed worker retried from its
checkpoint, Ctrl-C and resume. One local Ray instance (2 CPUs) serves the whole module."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import ray

from bench import api
from bench.core import run_folder
from bench.runs import records
from bench.runs.config import RunConfig, resolve
from bench.runs.runner import run_one
from bench.scheduling.backends.ray_session import cancel_and_drain, connect
from bench.training.train_log import read_train_log
from tests.bench.scheduling import tiny

WORKERS = [tiny.WORKER_MODULE]
METRICS = ("psnr", "ssim", "utilization", "perplexity", "dead_codes")


@pytest.fixture(scope="module", autouse=True)
def _test_registrations():
    """The tests' preset, datasets and method, in this process while this module runs (tiny.py)."""
    with tiny.registered():
        yield


def _cfg(seed: int = 0, k: int = 16, dataset: str = tiny.DATASET, method: str = "vqgan", **options) -> RunConfig:
    opts = {"method_options": options} if options else {}
    return RunConfig(method=method, dataset=dataset, codebook_size=k, seed=seed, preset=tiny.PRESET, **opts)


def _grid(trace_dir: Path, count_file: Path) -> list[RunConfig]:
    traced = dict(method=tiny.TRACED_METHOD, trace_dir=str(trace_dir))
    return [
        _cfg(0, **traced), _cfg(1, **traced), _cfg(0, k=8, **traced),
        RunConfig(method="vqgan", dataset=tiny.BROKEN_DATASET, codebook_size=16, preset=tiny.PRESET,
                  dataset_options={"count_file": str(count_file)}),
        _cfg(0, **traced),  # the first config again: one run, one record, no race on its folder
    ]


@pytest.fixture(scope="module")
def ray_session():
    assert not ray.is_initialized(), "another test left a Ray session open"
    session = connect(num_cpus=2)
    assert session.started and session.local
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_grid(ray_session, tmp_path_factory):
    base = tmp_path_factory.mktemp("ray_grid")
    (base / "trace").mkdir()
    configs = _grid(base / "trace", base / "broken_reads.txt")
    streamed = []
    recs = api.run_grid(configs, base / "out", progress=False, on_record=streamed.append, worker_imports=WORKERS)
    return {"base": base, "configs": configs, "records": recs, "streamed": streamed}


@pytest.fixture(scope="module")
def local_grid(tmp_path_factory):
    base = tmp_path_factory.mktemp("local_grid")
    (base / "trace").mkdir()
    configs = _grid(base / "trace", base / "broken_reads.txt")
    with tiny.like_a_worker():
        recs = api.run_grid(configs, base / "out", backend="local", progress=False)
    return {"base": base, "configs": configs, "records": recs}


def test_every_run_has_a_record_streamed_once(ray_grid):
    recs, configs = ray_grid["records"], ray_grid["configs"]
    assert len(recs) == len(configs)
    assert [r["run_id"] for r in recs] == [resolve(c).run_id for c in configs]  # the caller's order
    assert recs[4] is recs[0]  # the duplicate config shares the first one's run
    assert [r["status"] for r in recs[:4]] == ["finished", "finished", "finished", "failed"]
    # streamed as each run ended: each distinct run once
    assert sorted(r["run_id"] for r in ray_grid["streamed"]) == sorted({r["run_id"] for r in recs})
    on_disk = {r["run_id"]: r for r in records.iter_records(ray_grid["base"] / "out")}
    assert set(on_disk) == {r["run_id"] for r in recs}
    for r in recs[:3]:
        assert on_disk[r["run_id"]]["steps_done"] == tiny.STEPS
        assert r["placement"]["pid"] != os.getpid()  # it ran in a Ray worker, not here


def test_ray_gives_the_same_numbers_as_in_process(ray_grid, local_grid):
    for via_ray, here in zip(ray_grid["records"][:3], local_grid["records"][:3]):
        assert here["status"] == via_ray["status"] == "finished"
        assert "placement" not in here
        for key in METRICS:
            assert via_ray["metrics"][key] == here["metrics"][key], key
        same_time = {"elapsed_s": via_ray["final_train_logs"]["elapsed_s"]}
        assert via_ray["final_train_logs"] == {**here["final_train_logs"], **same_time}
    # and different seeds give different numbers (so the comparison above can fail)
    assert ray_grid["records"][0]["metrics"]["psnr"] != ray_grid["records"][1]["metrics"]["psnr"]


def test_a_run_that_raises_is_recorded_once_and_the_others_finish(ray_grid, local_grid):
    for grid in (ray_grid, local_grid):
        failed = grid["records"][3]
        assert failed["status"] == "failed"
        assert "RuntimeError: test-broken: this image cannot be decoded" in failed["error"]
        assert records.read_record(run_folder.runs_dir(grid["base"] / "out") / failed["run_id"])["status"] == "failed"
        reads = (grid["base"] / "broken_reads.txt").read_text().split()
        assert len(reads) == 1, reads  # an error of the run itself is not retried
        assert all(r["status"] == "finished" for r in grid["records"][:3])


def test_methods_and_datasets_are_prepared_once_in_the_driver(ray_grid):
    trace = ray_grid["base"] / "trace"
    assert sorted(p.name for p in trace.iterdir()) == ["prepare-K16.txt", "prepare-K8.txt"]
    for name in ("prepare-K16.txt", "prepare-K8.txt"):
        lines = (trace / name).read_text().splitlines()
        assert len(lines) == 1, lines  # K16 appears in three configs but is prepared once
        assert lines[0].split()[0] == str(os.getpid())  # in the driver, before the tasks


def test_rerun_skips_finished_runs_and_reruns_failed_ones(ray_grid):
    base = ray_grid["base"]
    recs = api.run_grid(ray_grid["configs"], base / "out", progress=False, worker_imports=WORKERS)
    assert [r.get("skipped", False) for r in recs[:4]] == [True, True, True, False]
    assert recs[3]["status"] == "failed"
    assert len((base / "broken_reads.txt").read_text().split()) == 2  # the failed run ran again, once


def test_killed_worker_is_retried_and_resumes_from_its_checkpoint(ray_session, tmp_path):
    config = _cfg(seed=7)
    marker = tmp_path / "killed.txt"
    [rec] = api.run_grid([config], tmp_path / "out", progress=False, worker_imports=WORKERS, max_retries=2,
                         on_checkpoint=tiny.KillOnce(str(marker)))
    killed_pid, killed_at = marker.read_text().split()
    assert int(killed_at) == tiny.CKPT_EVERY  # the first attempt died right after its first checkpoint
    assert rec["status"] == "finished"
    assert rec["steps_done"] == tiny.STEPS and rec["resumed_from"] == tiny.CKPT_EVERY
    assert rec["placement"]["pid"] != int(killed_pid)  # a new worker process ran the retry
    log_steps = [e["step"] for e in read_train_log(run_folder.runs_dir(tmp_path / "out") / rec["run_id"])]
    assert log_steps == list(range(1, tiny.STEPS + 1))  # each step logged once across the two attempts
    # the resumed run ends where an uninterrupted one does
    with tiny.like_a_worker():
        straight = run_one(config, tmp_path / "straight", progress=False)
    for key in METRICS:
        assert rec["metrics"][key] == straight["metrics"][key], key


def test_a_forced_run_whose_worker_died_is_retried_from_its_checkpoint_not_from_zero(ray_session, tmp_path):
    """--force starts a run over once: Ray's retry of the task gets the same arguments, and must resume."""
    marker = tmp_path / "killed.txt"
    [rec] = api.run_grid([_cfg(seed=14)], tmp_path / "out", force=True, progress=False, worker_imports=WORKERS,
                         max_retries=1, on_checkpoint=tiny.KillOnce(str(marker)))
    assert marker.exists() and rec["status"] == "finished" and rec["resumed_from"] == tiny.CKPT_EVERY


def test_worker_death_without_retries_keeps_the_checkpoint_for_the_next_invocation(ray_session, tmp_path):
    config = _cfg(seed=8)
    marker = tmp_path / "killed.txt"
    seen = []
    [rec] = api.run_grid([config], tmp_path / "out", progress=False, worker_imports=WORKERS, max_retries=0,
                         on_checkpoint=tiny.KillOnce(str(marker)), on_record=seen.append)
    assert rec["status"] == "failed" and rec["persisted"] is False and seen == [rec]
    assert "no retries left" in rec["error"]
    run_dir = run_folder.runs_dir(tmp_path / "out") / rec["run_id"]
    assert not (run_dir / run_folder.RECORD).exists()  # no record: not a failure of the run itself
    assert (run_dir / run_folder.CHECKPOINT).exists()
    [again] = api.run_grid([config], tmp_path / "out", progress=False, worker_imports=WORKERS, max_retries=0,
                           on_checkpoint=tiny.KillOnce(str(marker)))  # the marker exists: no second kill
    assert again["status"] == "finished" and again["resumed_from"] == tiny.CKPT_EVERY
    assert again["steps_done"] == tiny.STEPS


def test_an_exception_run_one_does_not_catch_is_recorded_by_the_driver_and_not_retried(ray_session, tmp_path):
    attempts = tmp_path / "attempts.txt"
    [rec] = api.run_grid([_cfg(seed=9)], tmp_path / "out", progress=False, worker_imports=WORKERS, max_retries=3,
                         on_checkpoint=tiny.BugOnCheckpoint(str(attempts)))
    assert rec["status"] == "failed" and rec["error"].startswith("KeyError:")
    assert "a bug in the run's own code" in rec["traceback"]
    assert len(attempts.read_text().splitlines()) == 1  # retries are for dead workers, not for errors
    on_disk = records.read_record(run_folder.runs_dir(tmp_path / "out") / rec["run_id"])
    assert on_disk["status"] == "failed" and on_disk["error"] == rec["error"]


def test_ctrl_c_cancels_the_rest_and_the_next_invocation_finishes_them(ray_session, tmp_path, capsys):
    configs = [_cfg(seed=s) for s in (10, 11, 12, 13)]

    def interrupt(record):
        raise KeyboardInterrupt  # as if Ctrl-C arrived while the driver handled the first record

    with pytest.raises(KeyboardInterrupt):
        api.run_grid(configs, tmp_path / "out", progress=False, worker_imports=WORKERS, on_record=interrupt)
    err = capsys.readouterr().err
    assert "interrupted:" in err and "Run the same command again" in err
    finished = {r["run_id"] for r in records.iter_records(tmp_path / "out")}
    assert 1 <= len(finished) < len(configs)  # what ended is saved; the cancelled runs left no record
    assert all(r["status"] == "finished" for r in records.iter_records(tmp_path / "out"))
    recs = api.run_grid(configs, tmp_path / "out", progress=False, worker_imports=WORKERS)
    assert all(r["status"] == "finished" and r["steps_done"] == tiny.STEPS for r in recs)
    assert {r["run_id"] for r in recs if r.get("skipped")} == finished


def _pid_then_sleep(started: str) -> int:
    Path(started).write_text(str(os.getpid()))
    import time

    time.sleep(60)
    return os.getpid()


def test_cancel_and_drain_kills_a_running_tasks_worker_so_no_later_task_reuses_it(ray_session, tmp_path):
    """An interrupt can cut an import in half and leave the worker broken for the next task it is
    given (ray_session.cancel_and_drain): a cancelled task's process must be gone, not reused."""
    started = tmp_path / "pid.txt"
    ref = ray.remote(_pid_then_sleep).remote(str(started))
    deadline = time.monotonic() + 60
    # the file exists before its pid is in it (write_text opens, then writes): wait for the text
    while not (started.exists() and started.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.1)
    pid = int(started.read_text())
    ended = []
    cancel_and_drain([ref], ended.append, grace_s=30)
    assert ended == [ref]  # it resolved within the wait, as cancelled
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(ref)
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)
    assert ray.get(ray.remote(_pid).remote()) != pid


def _pid() -> int:
    return os.getpid()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "zombie" in status.read_text())


def test_ray_tasks_run_only_the_runs_this_driver_claims(ray_session, tmp_path, capsys):
    """Leases (docs/scheduling.md): the driver claims before Ray sees a run, so a run another driver
    holds is never submitted, and a stale lease is taken over, the record written in the Ray worker
    noting it."""
    import json

    from bench.runs import lease

    live, stale = (run_folder.run_dir(tmp_path, resolve(_cfg(seed)).run_id) for seed in (0, 1))
    assert lease.try_claim(live, "otherdriver") and lease.try_claim(stale, "silent")
    old = {**json.loads(lease.path(stale).read_text()), "host": "another-node", "heartbeat": time.time() - 3600}
    lease.path(stale).write_text(json.dumps(old))
    recs = api.run_grid([_cfg(0), _cfg(1)], tmp_path, progress=False, worker_imports=WORKERS, wait=False)
    err = capsys.readouterr().err
    assert [r["config"]["seed"] for r in recs] == [1] and recs[0]["status"] == "finished"
    assert recs[0]["placement"]["pid"] != os.getpid()  # trained in a Ray worker
    assert recs[0]["lease_taken_over"]["driver"] == "silent" and "not refreshed" in recs[0]["lease_taken_over"]["why"]
    assert "claimed by driver otherdriver" in err and "--no-wait: left 1 run(s)" in err
    assert lease.read(live)["driver"] == "otherdriver" and records.read_record(live) is None
    assert not lease.path(stale).exists()
