"""A GPU that nvidia-smi lists but torch cannot use (driver older than the wheel's CUDA) is named
with both versions, refused for --device cuda and warned about for the default preset."""
import os
import stat

import pytest
import torch

from bench.cli import main as cli_main
from bench.runs import cuda_probe


@pytest.fixture
def fake_nvidia_smi(tmp_path, monkeypatch):
    """An nvidia-smi on PATH that lists one H100 with driver 470.01 (too old for CUDA 13)."""
    exe = tmp_path / "nvidia-smi"
    exe.write_text("#!/bin/sh\ncase \"$1\" in\n  -L) echo 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-x)';;\n"
                   "  --query-gpu=driver_version) echo '470.01';;\nesac\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return exe


def test_reason_names_driver_and_torch_cuda(fake_nvidia_smi, monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    reason = cuda_probe.unusable_reason()
    assert reason is not None
    assert "1 GPU(s)" in reason and "driver 470.01" in reason and "CUDA 13.0" in reason
    assert torch.__version__ in reason


def test_no_reason_without_a_listed_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi at all
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cuda_probe.visible_gpus() == [] and cuda_probe.unusable_reason() is None


def test_no_reason_when_torch_can_use_the_gpu(fake_nvidia_smi, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert cuda_probe.unusable_reason() is None


def test_device_cuda_is_refused_in_one_line_before_any_work(fake_nvidia_smi, capsys, tmp_path):
    out = tmp_path / "out"
    code = cli_main.main(["--methods", "vqgan", "--preset", "smoke", "--device", "cuda", "--no-ray", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "driver 470.01" in err[0] and "--device cuda" in err[0]
    assert not out.exists()


def test_device_cuda_without_any_gpu_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "out"
    code = cli_main.main(["--methods", "vqgan", "--preset", "smoke", "--device", "cuda", "--no-ray", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "sees no CUDA GPU" in err[0] and not out.exists()


def test_default_preset_on_an_unusable_gpu_warns_and_takes_the_cpu_default(fake_nvidia_smi, capsys, tmp_path,
                                                                            monkeypatch):
    from bench.generation import schedule

    class Stop(Exception):
        pass

    def stop(configs, *args, **kwargs):
        raise Stop(configs)

    monkeypatch.setattr(schedule, "run_grid_with_priors", stop)
    with pytest.raises(Stop) as stopped:
        cli_main.main(["--methods", "vqgan", "--no-ray", "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert "warning:" in captured.err and "driver 470.01" in captured.err
    assert "preset cpu-tiny: default for a CPU-only machine" in captured.out
    assert [c.seed for c in stopped.value.args[0]] == [0]
