"""--deterministic: the process settings it makes for a CUDA run (and undoes for the next run in the
same process; a CPU run never gets them), carried in RunConfig outside the run id, recorded in every
record of a run, and given by the CLI. What the settings do on a GPU cannot be checked here; that they
are made, before the run's first CUDA call and in whatever process runs it (run_one), can: making them
touches no GPU."""
import os

import pytest
import torch

from bench.cli import run as cli_run
from bench.cli.main import main
from bench.runs.config import RunConfig, resolve
from bench.runs import runner
from bench.runs.runner import run_one
from bench.training import determinism

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


@pytest.fixture(autouse=True)
def plain_mode_after():
    yield
    determinism.configure(False, CPU)


def _plain():
    return (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark, _sdp())


def _sdp():
    return {name: getattr(torch.backends.cuda, f"{name}_sdp_enabled")()
            for name in ("flash", "mem_efficient", "cudnn", "math")}


def test_configure_sets_every_switch_and_undoes_it(monkeypatch):
    monkeypatch.setenv(determinism.CUBLAS_ENV, ":0:0")  # not a deterministic setting; restored after the test
    before = _plain()
    assert determinism.configure(True, CUDA)
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert _sdp() == {"flash": False, "mem_efficient": False, "cudnn": False, "math": True}
    assert os.environ[determinism.CUBLAS_ENV] == ":4096:8"
    assert not determinism.configure(False, CUDA)
    assert _plain() == before
    assert not determinism.configure(True, CPU)  # a CPU run: torch's plain mode, with or without the switch
    assert _plain() == before


def test_a_deterministic_cublas_setting_given_by_the_user_is_kept(monkeypatch):
    monkeypatch.setenv(determinism.CUBLAS_ENV, ":16:8")
    determinism.configure(True, torch.device("cuda:1"))
    assert os.environ[determinism.CUBLAS_ENV] == ":16:8"


def test_a_warning_when_cuda_started_before_the_cublas_setting(monkeypatch):
    monkeypatch.setenv(determinism.CUBLAS_ENV, ":0:0")  # not one of NVIDIA's deterministic settings
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with pytest.warns(UserWarning, match="CUDA was initialised in this process before CUBLAS_WORKSPACE_CONFIG"):
        determinism.configure(True, CUDA)


def test_the_flag_is_not_part_of_the_run_id():
    plain = resolve(RunConfig(method="vqgan", preset="smoke", codebook_size=16))
    assert resolve(RunConfig(method="vqgan", preset="smoke", codebook_size=16, deterministic=True)).run_id == plain.run_id
    assert "deterministic" not in plain.to_dict()


def test_every_run_sets_its_mode_before_it_starts_and_records_what_was_asked(tmp_path, monkeypatch):
    calls, modes = [], []
    configure = determinism.configure

    def as_if_on_cuda(deterministic, device):  # the real settings, as a CUDA run would get them
        calls.append((deterministic, device))
        return configure(deterministic, CUDA)

    monkeypatch.setattr(runner.determinism, "configure", as_if_on_cuda)
    for deterministic, out in ((True, tmp_path / "a"), (False, tmp_path / "b")):
        cfg = RunConfig(method="vqgan", preset="smoke", codebook_size=16, steps=5, device="cpu",
                        deterministic=deterministic)
        record = run_one(cfg, out, progress=False,
                         on_checkpoint=lambda step: modes.append(torch.are_deterministic_algorithms_enabled()))
        assert record["status"] == "finished" and record["deterministic"] is deterministic
    assert calls == [(True, CPU), (False, CPU)]
    assert modes == [True, False]  # the second run, in the same process, is back in torch's plain mode


def test_the_cli_flag_reaches_every_config(monkeypatch, tmp_path):
    seen = []

    class Stop(Exception):
        pass

    def grid(configs, *args, **kwargs):
        seen.extend(configs)
        raise Stop

    monkeypatch.setattr(cli_run.generation_schedule, "run_grid_with_priors", grid)
    monkeypatch.setenv(determinism.CUBLAS_ENV, ":0:0")  # not a deterministic setting; restored after the test
    for flags, expected in (([], False), (["--deterministic"], True)):
        seen.clear()
        with pytest.raises(Stop):
            main(["--methods", "vqgan,fsq", "--preset", "smoke", "--no-ray", "--out", str(tmp_path), *flags])
        assert len(seen) == 2 and all(c.deterministic is expected for c in seen)
        # set before any run, for the worker processes the backend will start (they inherit it)
        assert os.environ.get(determinism.CUBLAS_ENV) == (":4096:8" if expected else ":0:0")
