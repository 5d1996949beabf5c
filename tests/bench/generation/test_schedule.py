"""`--generate`: a prior per tokenizer cell, started once that tokenizer's record exists; a skipped
(not failed) prior for a failed tokenizer; a rerun skips finished priors; the flags fail before any
work. Tokenizers are the scheduling tests' micro runs (tests/bench/scheduling/tiny.py: 16 px, 4
steps, no Inception) and the prior is `smoke` cut to a few steps and samples, without Inception, so a grid takes
seconds in-process; the Ray path (a local instance) is marked slow."""
from __future__ import annotations

import pytest

from bench.cli import main as cli
from bench.core.errors import UserError
from bench.generation import folder
from bench.generation.config import prior_preset
from bench.generation.record import read_prior_record
from bench.generation.schedule import prior_for_flags, run_grid_with_priors
from bench.runs.config import RunConfig
from tests.bench.scheduling import tiny

PRIOR = prior_preset("smoke").override({"train.steps": 4, "train.ckpt_every": 2, "eval.n_samples": 4,
                                        "sampling.batch_size": 4, "eval.grid_images": 4,
                                        "eval.inception_metrics": False})  # scheduling only: no Inception


@pytest.fixture(scope="module", autouse=True)
def _test_registrations():
    with tiny.registered():
        yield


def _configs() -> list[RunConfig]:
    good = RunConfig(method="vqgan", dataset=tiny.DATASET, codebook_size=8, preset=tiny.PRESET)
    broken = RunConfig(method="vqgan", dataset=tiny.BROKEN_DATASET, codebook_size=8, preset=tiny.PRESET)
    return [good, broken]


def _grid(out, events, **kwargs):
    return run_grid_with_priors(
        _configs(), out, PRIOR, progress=False, on_record=lambda r: events.append(("tokenizer", r["run_id"])),
        on_prior_record=lambda r: events.append(("prior", r["tokenizer"]["run_id"])), **kwargs)


def _check_first_grid(out, recs, events):
    toks, priors = recs[:2], recs[2:]
    assert [r["status"] for r in toks] == ["finished", "failed"]
    assert len(priors) == 2 and all(p["kind"] == "prior" for p in priors)
    by_tok = {p["tokenizer"]["run_id"]: p for p in priors}
    good, bad = by_tok[toks[0]["run_id"]], by_tok[toks[1]["run_id"]]
    assert good["status"] == "finished", good.get("traceback")
    assert good["steps_done"] == 4 and good["metrics"]["val_nll"] > 0
    assert bad["status"] == "skipped" and "'failed', not finished" in bad["error"]
    for p in (good, bad):  # each written where the tables read it
        assert read_prior_record(folder.prior_dir(out, p["prior_id"]))["status"] == p["status"]
    # every prior is reported after its own tokenizer's record
    for p in priors:
        run_id = p["tokenizer"]["run_id"]
        assert events.index(("tokenizer", run_id)) < events.index(("prior", run_id))
    return good, bad


def _check_rerun(out, first_good, recs):
    good_path = folder.prior_dir(out, first_good["prior_id"]) / folder.RECORD
    toks, priors = recs[:2], recs[2:]
    assert toks[0]["skipped"] and toks[1]["status"] == "failed"
    by_tok = {p["tokenizer"]["run_id"]: p for p in priors}
    again = by_tok[toks[0]["run_id"]]
    assert again["skipped"] is True and again["prior_id"] == first_good["prior_id"]
    assert read_prior_record(good_path.parent) == {k: v for k, v in again.items() if k != "skipped"}
    assert by_tok[toks[1]["run_id"]]["status"] == "skipped"


def test_local_grid_a_prior_per_tokenizer_skipped_for_a_failure_and_resumable(tmp_path):
    out, events = tmp_path / "out", []
    with tiny.like_a_worker():
        recs = _grid(out, events, backend="local")
    good, _ = _check_first_grid(out, recs, events)
    # local runs in order: tokenizer, its prior, next tokenizer, its prior
    assert [kind for kind, _ in events] == ["tokenizer", "prior", "tokenizer", "prior"]
    mtime = (folder.prior_dir(out, good["prior_id"]) / folder.RECORD).stat().st_mtime_ns
    with tiny.like_a_worker():
        again = _grid(out, [], backend="local")
    _check_rerun(out, good, again)
    assert (folder.prior_dir(out, good["prior_id"]) / folder.RECORD).stat().st_mtime_ns == mtime


def test_force_reruns_a_finished_prior(tmp_path):
    out = tmp_path / "out"
    cfg = _configs()[:1]
    with tiny.like_a_worker():
        first = run_grid_with_priors(cfg, out, PRIOR, progress=False, backend="local", on_prior_record=print)
        forced = run_grid_with_priors(cfg, out, PRIOR, progress=False, backend="local", force=True,
                                      on_prior_record=print)
    assert first[1]["status"] == forced[1]["status"] == "finished"
    assert "skipped" not in forced[1] and forced[1]["prior_id"] == first[1]["prior_id"]


@pytest.mark.slow
def test_ray_grid_priors_are_tasks_in_the_same_session(tmp_path):
    import ray

    out, events = tmp_path / "out", []
    recs = _grid(out, events, backend="ray", num_cpus=2, worker_imports=[tiny.WORKER_MODULE])
    good, _ = _check_first_grid(out, recs, events)
    assert not ray.is_initialized()  # the session this call opened is closed again
    again = _grid(out, [], backend="ray", num_cpus=2, worker_imports=[tiny.WORKER_MODULE])
    _check_rerun(out, good, again)


@pytest.mark.slow
def test_ray_ctrl_c_stops_the_priors_and_the_next_invocation_finishes_them(tmp_path):
    """Ctrl-C while the driver handles the first prior's record: the other priors are cancelled (a
    running one's worker killed), nothing half-written is left, and the same call again finishes all."""
    configs = [RunConfig(method="vqgan", dataset=tiny.DATASET, codebook_size=8, preset=tiny.PRESET, seed=s)
               for s in (0, 1, 2)]
    out = tmp_path / "out"

    def interrupt(record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_grid_with_priors(configs, out, PRIOR, progress=False, backend="ray", num_cpus=2,
                             worker_imports=[tiny.WORKER_MODULE], on_prior_record=interrupt)
    root = folder.priors_dir(out)
    written = [read_prior_record(d) for d in root.iterdir()] if root.exists() else []
    assert all(r is None or r["status"] == "finished" for r in written)  # killed priors wrote no record
    recs = run_grid_with_priors(configs, out, PRIOR, progress=False, backend="ray", num_cpus=2,
                                worker_imports=[tiny.WORKER_MODULE])
    priors = recs[3:]
    assert len(priors) == 3 and all(p["status"] == "finished" and p["steps_done"] == 4 for p in priors)
    assert sum(bool(p.get("skipped")) for p in priors) >= 1  # the one reported before Ctrl-C was kept


def test_prior_preset_flags():
    assert prior_for_flags(False, None, "smoke") is None
    assert prior_for_flags(True, None, "smoke").preset == "smoke"  # named like the tokenizer preset
    assert prior_for_flags(True, "cpu-tiny", "smoke").preset == "cpu-tiny"
    with pytest.raises(UserError, match="did you mean 'smoke'"):
        prior_for_flags(True, "smok", "smoke")
    with pytest.raises(UserError, match="without --generate"):
        prior_for_flags(False, "smoke", "smoke")
    with pytest.raises(UserError, match="choose one with --prior-preset"):
        prior_for_flags(True, None, tiny.PRESET)


@pytest.mark.parametrize("args", [["--generate", "--prior-preset", "nope"], ["--prior-preset", "smoke"]])
def test_bad_prior_flags_exit_2_before_any_folder(tmp_path, capsys, args):
    out = tmp_path / "out"
    code = cli.main(["--methods", "vqgan", "--preset", "smoke", "--no-ray", "--out", str(out), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "prior" in err[0]
    assert not out.exists()
