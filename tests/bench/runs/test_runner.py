"""One run end to end on the smoke preset: record schema, skip and force, failures as records,
and exact resume after an interruption."""
import json

import pytest

from bench.core import run_folder
from bench.core.errors import UserError
from bench.evaluation.metrics import keys
from bench.runs import records
from bench.runs.config import RunConfig, resolve
from bench.runs.runner import run_one


def _cfg(**kw):
    return RunConfig(**{"method": "vqgan", "preset": "smoke", "codebook_size": 16, "steps": 6, **kw})


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return out, run_one(_cfg(), out, progress=False)


def test_record_schema(finished):
    out, rec = finished
    assert rec["status"] == "finished" and rec["error"] is None
    for key in ("run_id", "status", "error", "config", "metrics", "protocol", "versions", "wall_s"):
        assert key in rec
    for key in ("method", "dataset", "codebook_size", "seed", "preset", "steps", "method_options"):
        assert key in rec["config"]
    assert rec["config"]["method_options"]["beta"] == 0.25 and rec["config"]["method_options"]["legacy"] is False
    for key in keys.RECORD_METRICS:
        assert key in rec["metrics"]
    assert rec["metrics"][keys.PSNR] > 5 and 0 <= rec["metrics"][keys.UTILIZATION] <= 1
    assert rec["steps_done"] == 6 and rec["protocol"]["n_images"] > 0
    assert rec["versions"]["torch"] and rec["versions"]["vqbench"]
    run_dir = run_folder.runs_dir(out) / rec["run_id"]
    on_disk = json.loads((run_dir / "record.json").read_text())
    assert on_disk["metrics"] == rec["metrics"]
    assert (run_dir / "reconstructions.png").exists() and (run_dir / "code_counts.npy").exists()
    assert not list(run_dir.glob("*.tmp"))


def test_finished_runs_are_skipped_unless_forced(finished):
    out, rec = finished
    again = run_one(_cfg(), out, progress=False)
    assert again.get("skipped") and again["run_id"] == rec["run_id"]
    forced = run_one(_cfg(), out, force=True, progress=False)
    assert not forced.get("skipped") and forced["metrics"] == rec["metrics"]  # seeded: same numbers


def test_run_id_is_stable_and_sensitive():
    a, b = resolve(_cfg()), resolve(_cfg())
    assert a.run_id == b.run_id
    assert resolve(_cfg(seed=1)).run_id != a.run_id
    assert resolve(_cfg(method_options={"beta": 0.5})).run_id != a.run_id
    assert resolve(_cfg(device="cpu")).run_id == a.run_id  # where it ran is not what it is


def test_bad_configs_fail_before_work(tmp_path):
    for bad, match in [(_cfg(codebook_size=0), "codebook size"), (_cfg(steps=-1), "steps"),
                       (_cfg(preset="huge"), "unknown preset"), (_cfg(method="vqgn"), "did you mean 'vqgan'"),
                       (_cfg(method_options={"betta": 1}), "no option 'betta'")]:
        with pytest.raises(UserError, match=match):
            run_one(bad, tmp_path, progress=False)
    assert not (tmp_path / "runs").exists()


def test_a_failing_run_is_recorded_as_failed(tmp_path, monkeypatch):
    import bench.runs.runner

    def boom(*a, **k):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(bench.runs.runner, "train", boom)
    rec = run_one(_cfg(), tmp_path, progress=False)
    assert rec["status"] == "failed" and "simulated failure" in rec["error"]
    on_disk = records.read_record(run_folder.runs_dir(tmp_path) / rec["run_id"])
    assert on_disk["status"] == "failed"


def test_interrupted_run_resumes_to_the_same_result(tmp_path):
    cfg = _cfg(steps=12)
    straight = run_one(cfg, tmp_path / "a", progress=False)

    def stop(step):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_one(cfg, tmp_path / "b", progress=False, on_checkpoint=stop)
    run_dir = run_folder.runs_dir(tmp_path / "b") / straight["run_id"]
    assert records.read_record(run_dir) is None  # no record: not finished, not failed
    resumed = run_one(cfg, tmp_path / "b", progress=False)
    assert resumed["resumed_from"] == 5 and resumed["steps_done"] == 12
    assert resumed["metrics"] == straight["metrics"]  # data order and RNG state restored exactly
    steps_logged = [json.loads(line)["step"] for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    assert steps_logged == sorted(set(steps_logged)) and steps_logged[-1] == 12
