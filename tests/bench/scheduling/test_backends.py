"""The backend registry and the driver with a backend registered by a test: a toy backend runs a
grid through api.run_grid and through the CLI's --backend, unknown names and options are one clear
error each, and only backends/ray*.py import Ray."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import ClassVar

import pytest
import ray

from bench import api
from bench.cli import main as cli
from bench.core.errors import UserError
from bench.runs import records
from bench.runs.config import RunConfig, resolve
from bench.runs.runner import run_one
from bench.scheduling import backends
from tests.bench.scheduling import tiny

BENCH = Path(__file__).resolve().parents[3] / "bench"


class ToyBackend:
    """Runs the cells in this process and notes which it was given."""

    summary = "runs the cells for the tests"
    given: ClassVar[list[list[str]]] = []  # run ids of the cells of each call

    def __init__(self, tag: str = "toy") -> None:
        self.tag = tag

    def run(self, cells, out, force, progress, report) -> None:
        ToyBackend.given.append([c.run_id for c in cells])
        for cell in cells:
            record = run_one(cell.config, out, force=force, progress=False)
            report(cell, {**record, "placement": {"backend": self.tag}})


@pytest.fixture(scope="module", autouse=True)
def _test_registrations():
    with tiny.registered():
        backends.registry.add("toy", ToyBackend)
        try:
            yield
        finally:
            backends.registry.remove("toy")


@pytest.fixture(autouse=True)
def _fresh_toy():
    ToyBackend.given.clear()
    with tiny.like_a_worker():
        yield


def _cfg(seed: int) -> RunConfig:
    return RunConfig(method="vqgan", dataset=tiny.DATASET, codebook_size=8, preset=tiny.PRESET, seed=seed)


def test_a_registered_backend_runs_a_grid_through_the_api(tmp_path):
    configs = [_cfg(0), _cfg(0)]
    streamed = []
    recs = api.run_grid(configs, tmp_path, progress=False, on_record=streamed.append, backend="toy", tag="t1")
    assert [r["run_id"] for r in recs] == [resolve(_cfg(0)).run_id] * 2 and recs[1] is recs[0]
    assert recs[0]["status"] == "finished" and recs[0]["placement"] == {"backend": "t1"}
    assert ToyBackend.given == [[recs[0]["run_id"]]] and streamed == recs[:1]
    assert [r["run_id"] for r in records.iter_records(tmp_path)] == [recs[0]["run_id"]]
    # finished runs never reach the backend: the driver sets them aside
    again = api.run_grid([_cfg(1), _cfg(0)], tmp_path, progress=False, backend="toy")
    assert [r.get("skipped", False) for r in again] == [False, True] and again[1]["run_id"] == recs[0]["run_id"]
    assert ToyBackend.given[1:] == [[again[0]["run_id"]]] and again[0]["placement"] == {"backend": "toy"}


def test_the_cli_runs_a_registered_backend(tmp_path, capsys):
    argv = ["--backend", "toy", "--methods", "vqgan", "--datasets", tiny.DATASET, "--preset", tiny.PRESET,
            "--codebook-sizes", "8", "--no-progress", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    assert len(ToyBackend.given) == 1 and len(ToyBackend.given[0]) == 1
    assert "finished vqgan on test-noise K=8" in capsys.readouterr().out
    assert [r["status"] for r in records.iter_records(tmp_path)] == ["finished"]


def test_the_cli_refuses_ray_flags_for_a_backend_that_does_not_take_them(tmp_path, capsys):
    code = cli.main(["--backend", "toy", "--methods", "vqgan", "--cpus-per-run", "2", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--cpus-per-run: Ray options, but --backend toy runs the cells for the tests" in err
    assert ToyBackend.given == [] and not (tmp_path / "runs").exists()


def test_an_unknown_backend_exits_2_with_a_suggestion(tmp_path, capsys):
    code = cli.main(["--backend", "rey", "--methods", "vqgan", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "unknown backend 'rey' (did you mean 'ray'?)" in err
    with pytest.raises(UserError, match="unknown backend 'tyo'.*did you mean 'toy'"):
        api.run_grid([_cfg(0)], tmp_path, backend="tyo")
    assert not (tmp_path / "runs").exists()


def test_an_option_the_backend_does_not_take_is_a_type_error_naming_it(tmp_path):
    with pytest.raises(TypeError, match=r"backend 'local' does not take max_retries \(its options: on_checkpoint\)"):
        api.run_grid([], tmp_path, backend="local", max_retries=2)
    with pytest.raises(TypeError, match=r"'ray' does not take max_retry, ray_adress \(its options: address, "):
        api.run_grid([], tmp_path, backend="ray", max_retry=2, ray_adress="auto")
    with pytest.raises(TypeError, match="'toy' does not take address .its options: tag"):
        api.run_grid([], tmp_path, backend="toy", address="auto")
    assert not ray.is_initialized()


def test_a_backend_must_have_a_summary_and_a_run_method():
    class NoRun:
        summary = "does nothing"

    class NoSummary:
        def run(self, cells, out, force, progress, report) -> None:
            pass

    for cls in (NoRun, NoSummary):
        with pytest.raises(TypeError, match="must be a class with a `summary` string"):
            backends.registry.add("broken", cls)
    assert "broken" not in backends.available()


def _ray_imports(nodes) -> bool:
    for node in nodes:
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
        if any(n == "ray" or n.startswith("ray.") for n in names):
            return True
    return False


def test_only_the_ray_backend_modules_import_ray_and_only_inside_functions():
    importers = []
    for path in sorted(BENCH.rglob("*.py")):
        tree = ast.parse(path.read_text())
        assert not _ray_imports(tree.body), f"{path} imports Ray when it is imported"
        if _ray_imports(ast.walk(tree)):
            importers.append(path.relative_to(BENCH).as_posix())
    assert importers and all(p.startswith("scheduling/backends/ray") for p in importers), importers
