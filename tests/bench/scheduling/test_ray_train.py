"""The ray-train backend and what its workers do.

Without Ray (the default suite): 2 gloo processes calling `run_job` as Ray Train's workers do (rank 0
alone evaluates and writes the record, the same record as 1 worker accumulating; an error in training
leaves no record for the driver to judge); how the driver judges an ended fit and retries a lost
worker (fake fits); the CLI's --workers-per-run. With Ray (slow: a fit of 2 workers takes one to two
minutes on the shared 2-core machine): a smoke run on 2 workers equals 1 worker accumulating, and a
worker killed after a checkpoint is restarted and resumes to the same result."""
from __future__ import annotations

import pytest
from ray.exceptions import ActorDiedError
from ray.train import ControllerError, WorkerGroupError

from bench import api
from bench.cli import main as cli
from bench.core import run_folder
from bench.core.errors import UserError
from bench.runs import records
from bench.runs.config import RunConfig
from bench.runs.records import RunRecord
from bench.runs.runner import run_one
from bench.scheduling import backends
from bench.scheduling.backends import ray_train
from bench.scheduling.backends.ray_train import FAILED, RECORD, RETRY, RayTrainBackend, judge
from bench.scheduling.plan import plan_cells
from bench.scheduling.resources import Resources
from tests.bench.scheduling import tiny
from tests.bench.scheduling.captured_grid import Captured
from tests.bench.scheduling.group import log_lines, run_in_group

METRICS = ("psnr", "ssim", "utilization", "perplexity", "dead_codes")


@pytest.fixture(scope="module", autouse=True)
def _test_registrations():
    with tiny.registered():
        yield


def _cfg(workers: int = 2, preset: str = tiny.SPLIT_PRESET, dataset: str = tiny.DATASET, **kw) -> RunConfig:
    return RunConfig(method="vqgan", dataset=dataset, codebook_size=16, preset=preset, workers=workers, **kw)


# --- a group's workers, without Ray ---------------------------------------------------------------

@pytest.fixture(scope="module")
def group(tmp_path_factory):
    base = tmp_path_factory.mktemp("group")
    jobs = [_cfg(workers=1, seed=1), _cfg(), _cfg(dataset=tiny.BROKEN_DATASET)]  # seed 1: its own run id
    outcomes = run_in_group(jobs, base / "out", base / "group")
    return {"base": base, "out": base / "out", "jobs": jobs, "outcomes": outcomes, "log": log_lines(base / "group")}


def _run_dir(out, config):
    return run_folder.run_dir(out, plan_cells([config])[0].run_id)


def test_a_run_for_another_group_size_is_refused_before_its_folder(group):
    for rank in (0, 1):
        error = group["outcomes"][rank][0]["error"]
        assert error.startswith("UserError:") and "asks for 1 data-parallel worker(s) but runs in a group of 2" in error
    assert not _run_dir(group["out"], group["jobs"][0]).exists()


def test_only_rank_0_evaluates_and_writes_the_record(group):
    rank0, rank1 = (group["outcomes"][r][1]["record"] for r in (0, 1))
    assert rank0["status"] == "finished" and rank0["steps_done"] == tiny.STEPS
    assert records.stored_form(rank1) == records.stored_form(rank0)  # the others return what rank 0 wrote
    assert records.read_record(_run_dir(group["out"], group["jobs"][1])) == records.stored_form(rank0)
    assert group["log"] == ["0 evaluate", "0 write"]  # once, by rank 0, for the whole grid of three jobs
    assert rank0["optimization"] == {"global_batch": 4, "micro_batch": 2, "workers": 2, "accumulation": 1,
                                     "lr": pytest.approx(4e-3)}


def test_two_workers_equal_one_worker_accumulating_without_ray(group, tmp_path):
    two = group["outcomes"][0][1]["record"]
    with tiny.like_a_worker():
        one = run_one(_cfg(workers=1), tmp_path, progress=False)
    assert one["run_id"] == two["run_id"]  # how the batch is split is not part of the run id
    assert (one["optimization"]["workers"], one["optimization"]["accumulation"]) == (1, 2)
    for key in METRICS:
        assert two["metrics"][key] == pytest.approx(one["metrics"][key], rel=1e-4, abs=1e-6), key


def test_an_error_in_training_leaves_no_record_for_the_launcher_to_judge(group):
    for rank in (0, 1):
        assert group["outcomes"][rank][2]["error"] == "RuntimeError: test-broken: this image cannot be decoded"
    assert records.read_record(_run_dir(group["out"], group["jobs"][2])) is None


# --- the driver: what an ended fit means, and the retries ------------------------------------------

def _lost_worker_1() -> WorkerGroupError:
    # rank 1's process died; rank 0 saw its connection go inside an all-reduce
    return WorkerGroupError("lost", {0: RuntimeError("[pair.cc:545] Read error: Connection reset by peer"),
                                     1: ActorDiedError()})


def test_judge_names_the_lost_worker_not_the_one_that_saw_it_go():
    verdict, why = judge(_lost_worker_1(), None)
    assert verdict == RETRY and why.startswith("worker 1: ActorDiedError")
    verdict, why = judge(WorkerGroupError("x", {0: RuntimeError("Connection closed by peer")}), None)
    assert verdict == RETRY and why.startswith("worker 0: RuntimeError")
    assert judge(ControllerError(RuntimeError("placement group failed")), None)[0] == RETRY


def test_judge_records_errors_of_the_run_and_what_rank_0_wrote():
    verdict, why = judge(WorkerGroupError("x", {1: KeyError("a bug")}), None)
    assert verdict == FAILED and why == "KeyError: 'a bug' (on worker 1)"
    written = {"run_id": "x", "status": "finished"}
    assert judge(_lost_worker_1(), written) == (RECORD, None)  # rank 0 finished before the group fell apart
    assert judge(None, written) == (RECORD, None)
    assert judge(None, None) == (FAILED, None)  # every worker returned, yet no record: the folder is not shared


class _FakeFit:
    """Stands in for a TorchTrainer: each fit plays the next step of `script` ("lose", "bug", "finish",
    "nothing", "interrupt": Ctrl-C in the driver) and notes whether it was told to start over and
    whether its controller was aborted."""

    def __init__(self, script, cell, out):
        self.script, self.cell, self.out, self.forces, self.aborted = list(script), cell, out, [], []

    def trainer(self, cell, req, out, force, storage, attempt):  # replaces RayTrainBackend._trainer
        self.forces.append(force)
        step = self.script.pop(0)

        aborted = self.aborted

        class Controller:
            class abort:  # noqa: N801 - stands in for the controller actor's method
                @staticmethod
                def remote():
                    aborted.append(True)
                    return "abort-ref"

        class Trainer:
            controller = Controller()

            def fit(inner):
                if step == "interrupt":
                    raise KeyboardInterrupt
                if step == "lose":
                    raise _lost_worker_1()
                if step == "bug":
                    raise WorkerGroupError("bug", {1: KeyError("a bug")})
                if step == "finish":
                    RunRecord(cell.run_id, records.FINISHED, cell.run.to_dict(), metrics={"psnr": 1.0}).write(out)

        return Trainer()


def _drive(monkeypatch, tmp_path, script, max_retries=3, force=False):
    [cell] = plan_cells([_cfg()])
    fake = _FakeFit(script, cell, tmp_path)
    monkeypatch.setattr(RayTrainBackend, "_trainer", fake.trainer)
    record = RayTrainBackend(max_retries=max_retries)._run_cell(cell, {"CPU": 1.0}, tmp_path, force, str(tmp_path))
    return record, fake, run_folder.run_dir(tmp_path, cell.run_id)


def test_a_lost_worker_restarts_the_group_which_resumes(monkeypatch, tmp_path, capsys):
    record, fake, run_dir = _drive(monkeypatch, tmp_path, ["lose", "finish"], force=True)
    assert record["status"] == "finished" and records.read_record(run_dir) == records.stored_form(record)
    assert fake.forces == [True, False]  # the restart resumes the checkpoint instead of starting over
    assert "lost worker 1: ActorDiedError" in capsys.readouterr().err


def test_the_failed_record_of_an_earlier_invocation_is_not_taken_for_this_attempts(monkeypatch, tmp_path):
    """A failed run keeps its record until a new attempt ends (bench/runs/runner.py): a fit that loses a
    worker leaves that old record in place, and the driver must still restart the group, not report it."""
    [cell] = plan_cells([_cfg()])
    RunRecord(cell.run_id, records.FAILED, cell.run.to_dict(), error="OutOfMemoryError: before").write(tmp_path)
    record, fake, run_dir = _drive(monkeypatch, tmp_path, ["lose", "finish"])
    assert fake.forces == [False, False] and record["status"] == "finished"
    assert records.read_record(run_dir) == records.stored_form(record)


def test_when_the_retries_are_spent_the_run_is_failed_without_a_record(monkeypatch, tmp_path):
    record, fake, run_dir = _drive(monkeypatch, tmp_path, ["lose"] * 3, max_retries=2)
    assert len(fake.forces) == 3 and record["status"] == "failed" and record["persisted"] is False
    assert "worker 1: ActorDiedError" in record["error"] and "no retries left" in record["error"]
    assert records.read_record(run_dir) is None  # the next invocation resumes from the checkpoint


def test_an_error_of_the_run_is_recorded_and_not_retried(monkeypatch, tmp_path):
    record, fake, run_dir = _drive(monkeypatch, tmp_path, ["bug", "finish"])
    assert len(fake.forces) == 1 and record["status"] == "failed"
    assert record["error"] == "KeyError: 'a bug' (on worker 1)" and record["optimization"]["workers"] == 2
    assert records.read_record(run_dir)["error"] == record["error"]


def test_ctrl_c_during_a_fit_aborts_its_controller_and_leaves_no_record(monkeypatch, tmp_path):
    import ray

    waited = []
    monkeypatch.setattr(ray, "get", lambda ref, timeout=None: waited.append((ref, timeout)))
    with pytest.raises(KeyboardInterrupt):
        _drive(monkeypatch, tmp_path, ["interrupt", "finish"])
    [cell] = plan_cells([_cfg()])
    assert waited == [("abort-ref", ray_train.CANCEL_GRACE_S)]  # the workers are killed, with a bounded wait
    assert records.read_record(run_folder.run_dir(tmp_path, cell.run_id)) is None  # resumes next time


def test_a_fit_without_a_record_says_the_folder_must_be_shared(monkeypatch, tmp_path):
    record, _, _ = _drive(monkeypatch, tmp_path, ["nothing"])
    assert record["status"] == "failed" and "--out must be a folder that the driver and every worker share" in record["error"]


def test_a_group_must_fit_at_once_and_have_whole_gpus():
    cells = plan_cells([_cfg(workers=2)])
    one_cpu = [{"Resources": {"CPU": 1.0, "GPU": 2.0}}]
    with pytest.raises(UserError, match="needs 2 workers .* room for 1"):
        ray_train._check_groups(cells, {cells[0].run_id: {"CPU": 1.0}}, one_cpu, strict=True)
    with pytest.raises(UserError, match="--gpus-per-run 0.5 with --workers-per-run 2"):
        ray_train._check_groups(cells, {cells[0].run_id: {"CPU": 0.5, "GPU": 0.5}}, one_cpu, strict=True)
    ray_train._check_groups(cells, {cells[0].run_id: {"CPU": 0.5, "GPU": 1.0}}, one_cpu, strict=True)  # fits


def test_eval_jobs_and_training_runs_get_their_group_size():
    assert ray_train.workers_of(_cfg(workers=4)) == 4
    assert ray_train.workers_of(object()) == 1  # a released-checkpoint evaluation: nothing to split


# --- the command line ------------------------------------------------------------------------------

def test_workers_per_run_selects_ray_train_with_resources_per_worker(captured, tmp_path):
    with pytest.raises(Captured):
        cli.main(["--methods", "vqgan", "--preset", "smoke", "--workers-per-run", "2", "--cpus-per-run", "2",
                  "--gpus-per-run", "0", "--out", str(tmp_path)])
    assert captured["backend"] == "ray-train" and all(c.workers == 2 for c in captured["configs"])
    assert captured["resources"] == Resources(cpus=2.0, gpus=0.0)
    made = backends.create("ray-train", resources=captured["resources"])
    assert isinstance(made, RayTrainBackend) and made.resources.threads == 2


def test_one_worker_per_run_keeps_the_default_backend(captured, tmp_path):
    with pytest.raises(Captured):
        cli.main(["--methods", "vqgan", "--preset", "smoke", "--workers-per-run", "1", "--out", str(tmp_path)])
    assert captured["backend"] == "ray" and all(c.workers == 1 for c in captured["configs"])


@pytest.mark.parametrize("flags", [["--no-ray"], ["--backend", "local"], ["--backend", "ray"]])
def test_workers_per_run_with_another_backend_is_refused(flags, tmp_path, capsys):
    assert cli.main(["--methods", "vqgan", "--preset", "smoke", "--workers-per-run", "2", *flags,
                     "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--workers-per-run 2" in err and " ".join(flags) in err
    assert not (tmp_path / "out").exists()


def test_a_worker_count_that_does_not_divide_the_global_batch_is_refused(tmp_path, capsys):
    assert cli.main(["--methods", "vqgan", "--preset", "smoke", "--workers-per-run", "3", "--out",
                     str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "global batch of 8 does not split into 3 workers" in err
    assert not (tmp_path / "out").exists()


def test_eval_has_no_workers_per_run(tmp_path, capsys):
    assert cli.main(["eval", "--checkpoint", "vqbench:x", "--workers-per-run", "2"]) == 2
    assert "unrecognized arguments: --workers-per-run 2" in capsys.readouterr().err


# --- through Ray Train (slow) ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_session():
    import ray

    from bench.scheduling.backends.ray_session import connect

    assert not ray.is_initialized(), "another test left a Ray session open"
    connect(num_cpus=2)
    yield
    ray.shutdown()


def _smoke(workers: int) -> RunConfig:
    return RunConfig(method="vqgan", codebook_size=16, preset=tiny.SMOKE_SPLIT_PRESET, workers=workers)


@pytest.fixture(scope="module")
def smoke_on_two_workers(ray_session, tmp_path_factory):
    out = tmp_path_factory.mktemp("ray_train")
    [record] = api.run_grid([_smoke(2)], out, backend="ray-train", progress=False, worker_imports=[tiny.WORKER_MODULE])
    return record


@pytest.mark.slow
def test_smoke_on_two_ray_train_workers_equals_one_worker_accumulating(smoke_on_two_workers, tmp_path):
    two = smoke_on_two_workers
    assert two["status"] == "finished" and two["steps_done"] == 20 and two["resumed_from"] == 0
    assert two["optimization"] == {"global_batch": 8, "micro_batch": 4, "workers": 2, "accumulation": 1,
                                   "lr": pytest.approx(8e-4)}
    with tiny.like_a_worker():
        one = run_one(_smoke(1), tmp_path, progress=False)
    assert one["run_id"] == two["run_id"] and one["optimization"]["accumulation"] == 2
    for key in METRICS:
        assert two["metrics"][key] == pytest.approx(one["metrics"][key], rel=1e-3, abs=1e-5), key


@pytest.mark.slow
def test_a_killed_ray_train_worker_resumes_from_rank_0s_checkpoint(smoke_on_two_workers, tmp_path):
    marker = tmp_path / "killed"
    [record] = api.run_grid([_smoke(2)], tmp_path / "out", backend="ray-train", progress=False,
                            worker_imports=[tiny.WORKER_MODULE], on_checkpoint=tiny.KillOnce(str(marker), rank=1))
    pid, step = marker.read_text().split()
    assert int(step) == 5  # rank 1 died after the first checkpoint (every 5 steps)
    assert record["status"] == "finished" and record["resumed_from"] == 5 and record["steps_done"] == 20
    assert record["metrics"] == smoke_on_two_workers["metrics"]  # as if it had never been killed
