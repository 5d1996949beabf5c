"""Scheduling without starting Ray: resources, the progress line, the CLI flags, records written by
the driver, and that preparation creates exactly the dataset splits a run reads."""
from __future__ import annotations

import io
import json

import pytest
import ray

from bench import api
from bench.cli import main as cli
from bench.core import run_folder
from bench.core.errors import UserError
from bench.runs import runner
from bench.runs.config import RunConfig
from bench.scheduling import grid as scheduling
from tests.bench.scheduling import tiny


@pytest.fixture(scope="module", autouse=True)
def _test_registrations():
    """The tests' preset, datasets and method, in this process while this module runs (tiny.py)."""
    with tiny.registered():
        yield


@pytest.mark.parametrize("text, expected", [("8G", 8 * 2**30), ("512MiB", 512 * 2**20), ("1.5g", int(1.5 * 2**30)),
                                            ("1000", 1000), (2048, 2048), ("2 GB", 2 * 2**30)])
def test_parse_memory(text, expected):
    assert scheduling.parse_memory(text) == expected


@pytest.mark.parametrize("text", ["", "eight", "8Q", "-1G", "0"])
def test_parse_memory_rejects(text):
    with pytest.raises(UserError):
        scheduling.parse_memory(text)


def test_resources_validate_and_default_to_gpus_when_the_cluster_has_them():
    for bad in (dict(cpus=0), dict(gpus=-1), dict(gpus=1.5), dict(custom={"x": 0})):
        with pytest.raises(UserError):
            scheduling.Resources(**bad)
    res = scheduling.Resources(cpus=2, memory=4 * 2**30, custom={"A100": 1})
    cfg = RunConfig(method="vqgan")
    assert res.request(cfg, cluster_gpus=0) == {"CPU": 2.0, "A100": 1.0, "memory": 4.0 * 2**30}
    assert res.request(cfg, cluster_gpus=8)["GPU"] == 1.0
    assert "GPU" not in res.request(RunConfig(method="vqgan", device="cpu"), cluster_gpus=8)
    assert scheduling.Resources(gpus=0.25).request(cfg, 0)["GPU"] == 0.25
    assert scheduling.Resources(cpus=0.5).threads == 1 and scheduling.Resources(cpus=3.7).threads == 3


def test_capacity_counts_runs_that_fit_at_once():
    nodes = [{"CPU": 16.0, "GPU": 2.0}, {"CPU": 2.0}, {"CPU": 8.0, "GPU": 1.0}]
    assert scheduling.capacity({"CPU": 1.0, "GPU": 0.5}, nodes) == 4 + 2
    assert scheduling.capacity({"CPU": 1.0}, nodes) == 26
    assert scheduling.capacity({"CPU": 4.0, "GPU": 1.0}, nodes) == 2 + 1
    assert scheduling.capacity({"CPU": 1.0, "TPU": 1.0}, nodes) == 0


def test_progress_line_counts_and_eta():
    buf = io.StringIO()
    p = scheduling.Progress(5, True, stream=buf, in_place=False)
    p.slots, p.in_flight = 2, 4
    p.count({"status": "finished", "skipped": True})
    assert p.line().startswith("grid: 1/5 done (1 skipped) | 2 running, 2 pending |") and p.line().endswith("ETA ?")
    p.count({"status": "failed"})
    p.in_flight = 3
    assert "2/5 done (1 failed, 1 skipped) | 2 running, 1 pending" in p.line() and "ETA " in p.line()
    p.show()
    p.show()  # unchanged counts: no second line in a log
    assert buf.getvalue().count("\n") == 1
    p.count({"status": "finished"}), p.count({"status": "finished"}), p.count({"status": "finished"})
    p.in_flight = 0
    assert p.line().endswith("done") and "5/5 done" in p.line()


def test_driver_writes_missing_records_and_leaves_identical_ones(tmp_path):
    rec = {"run_id": "r1", "status": "finished", "metrics": {"psnr": 1.5}, "config": {"ch_mult": (1, 2)},
           "placement": {"node_id": "n"}, "skipped": False}
    scheduling.persist(rec, tmp_path)  # a node with its own disk wrote it there, not here
    path = run_folder.runs_dir(tmp_path) / "r1" / run_folder.RECORD
    stored = json.loads(path.read_text())
    assert stored["config"]["ch_mult"] == [1, 2] and "placement" not in stored and "skipped" not in stored
    before = path.stat().st_mtime_ns
    scheduling.persist(rec, tmp_path)  # shared folder: the worker's file is already this record
    assert path.stat().st_mtime_ns == before
    scheduling.persist({**rec, "status": "failed"}, tmp_path)
    assert json.loads(path.read_text())["status"] == "failed"


def test_preparation_creates_the_splits_a_run_reads(monkeypatch, tmp_path):
    import datasets

    calls = []
    real = datasets.create

    def spy(name, split, resolution, root=None, **options):
        calls.append((name, split, resolution, root, options))
        return real(name, split, resolution, root, **options)

    monkeypatch.setattr(datasets, "create", spy)
    config = RunConfig(method="vqgan", dataset=tiny.DATASET, codebook_size=8, preset=tiny.PRESET, seed=3)
    with tiny.like_a_worker():
        assert runner.run_one(config, tmp_path, progress=False)["status"] == "finished"
    by_run = list(calls)
    calls.clear()
    [cell] = scheduling.plan_cells([config])
    assert scheduling.prepare_here([cell]) == []
    assert calls == by_run and len(by_run) == 2


def test_preparation_problems_are_reported_not_raised(monkeypatch):
    import datasets

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(datasets, "create", broken)
    cells = scheduling.plan_cells([RunConfig(method="vqgan", dataset=tiny.DATASET, preset=tiny.PRESET)])
    problems = scheduling.prepare_here(cells)
    assert len(problems) == 2 and all("OSError: disk full" in p for p in problems)


def test_bad_config_fails_before_ray_starts(tmp_path):
    assert not ray.is_initialized()
    with pytest.raises(UserError, match="unknown method"):
        api.run_grid([RunConfig(method="vqgan", preset=tiny.PRESET), RunConfig(method="no-such-method")],
                     tmp_path / "out", progress=False)
    assert not ray.is_initialized() and not (tmp_path / "out").exists()


def test_all_finished_needs_no_ray(tmp_path):
    config = RunConfig(method="vqgan", dataset=tiny.DATASET, codebook_size=8, preset=tiny.PRESET, seed=4)
    with tiny.like_a_worker():
        first = runner.run_one(config, tmp_path, progress=False)
    [again] = api.run_grid([config], tmp_path, progress=False)  # ray=True, but nothing is left to run
    assert again["skipped"] and again["run_id"] == first["run_id"] and not ray.is_initialized()


def test_in_process_takes_no_ray_options(tmp_path):
    with pytest.raises(TypeError, match="max_retries"):
        api.run_grid([], tmp_path, ray=False, max_retries=2)


class _Captured(Exception):
    pass


@pytest.fixture
def captured(monkeypatch):
    seen = {}

    def fake_run_grid(configs, out, **kwargs):
        seen.update(kwargs, configs=configs)
        raise _Captured

    monkeypatch.setattr(api, "run_grid", fake_run_grid)
    return seen


def test_cli_defaults_to_ray_sized_to_the_machine(captured, tmp_path):
    with pytest.raises(_Captured):
        cli.main(["--methods", "vqgan", "--steps", "1", "--out", str(tmp_path)])
    assert captured["ray"] is True and captured["address"] is None and captured["num_cpus"] is None
    assert captured["resources"] == scheduling.Resources() and captured["max_retries"] == 3


def test_cli_scheduling_flags_reach_the_scheduler(captured, tmp_path):
    with pytest.raises(_Captured):
        cli.main(["--methods", "vqgan", "--steps", "1", "--out", str(tmp_path), "--ray-address", "auto",
                  "--cpus-per-run", "2", "--gpus-per-run", "0.5", "--memory-per-run", "6G", "--resource", "A100=1",
                  "--max-retries", "5"])
    assert captured["address"] == "auto" and captured["max_retries"] == 5
    assert captured["resources"] == scheduling.Resources(cpus=2.0, gpus=0.5, memory=6 * 2**30, custom={"A100": 1.0})


def test_cli_no_ray_runs_in_process(captured, tmp_path):
    with pytest.raises(_Captured):
        cli.main(["--methods", "vqgan", "--steps", "1", "--out", str(tmp_path), "--no-ray"])
    assert captured["ray"] is False and "resources" not in captured


@pytest.mark.parametrize("argv, message", [
    (["--no-ray", "--gpus-per-run", "1"], "--gpus-per-run: Ray options, but --no-ray"),
    (["--memory-per-run", "lots"], "memory must look like"),
    (["--gpus-per-run", "1.5"], "whole number"),
    (["--resource", "A100"], "expected NAME=AMOUNT"),
])
def test_cli_rejects_bad_scheduling_flags(argv, message, capsys, captured, tmp_path):
    try:
        code = cli.main(["--methods", "vqgan", "--out", str(tmp_path), *argv])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2 and message in capsys.readouterr().err and not captured
