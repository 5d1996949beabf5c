"""The scheduling flags of the CLI and the driver's checks, without starting Ray: bad configs fail
before Ray starts, a grid with nothing left to run needs no Ray, each flag reaches its backend
option, and Ray flags are refused with the local backend."""
from __future__ import annotations

import pytest
import ray

from bench import api
from bench.cli import main as cli
from bench.core.errors import UserError
from bench.runs import runner
from bench.runs.config import RunConfig
from bench.scheduling import backends
from bench.scheduling.backends.ray import DEFAULT_MAX_RETRIES
from bench.scheduling.resources import Resources
from tests.bench.scheduling import tiny
from tests.bench.scheduling.captured_grid import Captured


@pytest.fixture(scope="module", autouse=True)
def _test_registrations():
    """The tests' preset, datasets and method, in this process while this module runs (tiny.py)."""
    with tiny.registered():
        yield


def test_bad_config_fails_before_ray_starts(tmp_path):
    assert not ray.is_initialized()
    with pytest.raises(UserError, match="unknown method"):
        api.run_grid([RunConfig(method="vqgan", preset=tiny.PRESET), RunConfig(method="no-such-method")],
                     tmp_path / "out", progress=False)
    assert not ray.is_initialized() and not (tmp_path / "out").exists()


def test_bad_backend_option_value_fails_before_anything_starts(tmp_path):
    with pytest.raises(UserError, match="max retries must be >= 0"):
        api.run_grid([RunConfig(method="vqgan", preset=tiny.PRESET)], tmp_path / "out", max_retries=-1)
    assert not ray.is_initialized() and not (tmp_path / "out").exists()


def test_all_finished_needs_no_ray(tmp_path):
    config = RunConfig(method="vqgan", dataset=tiny.DATASET, codebook_size=8, preset=tiny.PRESET, seed=4)
    with tiny.like_a_worker():
        first = runner.run_one(config, tmp_path, progress=False)
    [again] = api.run_grid([config], tmp_path, progress=False)  # backend="ray", but nothing is left to run
    assert again["skipped"] and again["run_id"] == first["run_id"] and not ray.is_initialized()


def _backend(captured: dict) -> object:
    """The backend the captured arguments make (its defaults fill what the CLI left out)."""
    options = {k: v for k, v in captured.items() if k not in ("configs", "force", "progress", "on_record", "backend", "wait")}
    return backends.create(captured["backend"], **options)


def test_cli_defaults_to_ray_sized_to_the_machine(captured, tmp_path):
    with pytest.raises(Captured):
        cli.main(["--methods", "vqgan", "--steps", "1", "--out", str(tmp_path)])
    assert captured["backend"] == "ray"
    made = _backend(captured)
    assert made.address is None and made.num_cpus is None and made.num_gpus is None
    assert made.resources == Resources() and made.max_retries == DEFAULT_MAX_RETRIES == 3


def test_cli_scheduling_flags_reach_the_scheduler(captured, tmp_path):
    with pytest.raises(Captured):
        cli.main(["--methods", "vqgan", "--steps", "1", "--out", str(tmp_path), "--ray-address", "auto",
                  "--cpus-per-run", "2", "--gpus-per-run", "0.5", "--memory-per-run", "6G", "--resource", "A100=1",
                  "--max-retries", "5"])
    assert captured["backend"] == "ray" and captured["address"] == "auto" and captured["max_retries"] == 5
    assert captured["resources"] == Resources(cpus=2.0, gpus=0.5, memory=6 * 2**30, custom={"A100": 1.0})
    made = _backend(captured)
    assert made.address == "auto" and made.max_retries == 5 and made.resources == captured["resources"]


def test_cli_one_resource_flag_keeps_the_other_defaults(captured, tmp_path):
    with pytest.raises(Captured):
        cli.main(["--methods", "vqgan", "--out", str(tmp_path), "--num-cpus", "2", "--gpus-per-run", "0.25"])
    assert captured["num_cpus"] == 2 and captured["resources"] == Resources(cpus=1.0, gpus=0.25)


@pytest.mark.parametrize("flags", [["--no-ray"], ["--backend", "local"], ["--no-ray", "--backend", "local"]])
def test_cli_no_ray_runs_in_process(flags, captured, tmp_path):
    with pytest.raises(Captured):
        cli.main(["--methods", "vqgan", "--steps", "1", "--out", str(tmp_path), *flags])
    assert captured["backend"] == "local" and "resources" not in captured


@pytest.mark.parametrize("argv, message", [
    (["--no-ray", "--gpus-per-run", "1"], ("--gpus-per-run: Ray options, but --no-ray runs one after another in this "
                                           "process; drop one or the other")),
    (["--backend", "local", "--ray-address", "auto", "--max-retries", "1"],
     "--ray-address, --max-retries: Ray options, but --backend local runs"),
    (["--no-ray", "--backend", "ray"], "--no-ray is --backend local, but --backend ray was given"),
    (["--backend", "rey"], "unknown backend 'rey' (did you mean 'ray'?); available: local, ray"),
    (["--memory-per-run", "lots"], "memory must look like"),
    (["--gpus-per-run", "1.5"], "whole number"),
    (["--resource", "A100"], "expected NAME=AMOUNT"),
])
def test_cli_rejects_bad_scheduling_flags(argv, message, capsys, captured, tmp_path):
    code = cli.main(["--methods", "vqgan", "--out", str(tmp_path), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and not captured


def test_cli_help_names_the_backends(capsys):
    assert cli.main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--backend NAME what executes the runs: local runs one after another in this process; ray (default) " \
           "runs each run as a Ray task" in out and "--no-ray the same as --backend local" in out


@pytest.mark.parametrize("cuda, expected", [(False, "preset cpu-tiny: default for a CPU-only machine"),
                                            (True, "preset gpu-tiny: default for a CUDA machine")])
def test_cli_without_preset_takes_the_machines_default_and_says_so(cuda, expected, captured, capsys, monkeypatch,
                                                                    tmp_path):
    import torch

    from bench.runs.config import resolve

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    with pytest.raises(Captured):
        cli.main(["--methods", "vqgan", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert expected in out
    # the CUDA default runs three seeds (a verdict between methods needs them), the CPU's one
    seeds = [0, 1, 2] if cuda else [0]
    assert [c.seed for c in captured["configs"]] == seeds
    assert ("seeds 0,1,2 (the preset's default)" in out) == cuda
    config = captured["configs"][0]
    run = resolve(config)
    # the record's config names the preset that ran, and the record says why it was chosen
    assert config.preset is None and run.to_dict()["preset"] == ("gpu-tiny" if cuda else "cpu-tiny")
    assert run.preset_source == expected.split(": ", 1)[1] + " (--preset to choose)"


def test_cli_given_preset_is_printed_as_given(captured, capsys, tmp_path):
    with pytest.raises(Captured):
        cli.main(["--methods", "vqgan", "--preset", "smoke", "--out", str(tmp_path)])
    assert "preset smoke: given" in capsys.readouterr().out and captured["configs"][0].preset == "smoke"
