"""A checkpoint is read into CPU memory and each tensor is placed by its owner: weights onto the
module's device, Adam's moments onto their parameter's device, Adam's `step` stays a CPU tensor (on
the GPU it would make every later optimizer step synchronise). The 'meta' device stands in for a GPU.
The CUDA RNG state is saved and restored only by runs whose tensors are on CUDA."""
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open
from torch import nn

from bench.training import checkpoint
from bench.training.checkpoint import load_checkpoint, save_checkpoint
from bench.training.optimizers import Adam


def _trained(device: str = "cpu") -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)).to(device)
    opt = Adam(model.parameters(), lr=1e-3)
    if device == "cpu":
        for _ in range(2):
            model(torch.randn(5, 4)).square().mean().backward()
            opt.step()
    return model, opt


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")  # meta weights take no values
def test_optimizer_moments_follow_their_parameters_and_step_stays_on_the_cpu(tmp_path):
    model, opt = _trained()
    save_checkpoint(tmp_path / "c.safetensors", 2, {"model": model}, {"opt": opt})
    target, target_opt = _trained("meta")  # parameters on a device other than the CPU
    assert load_checkpoint(tmp_path / "c.safetensors", {"model": target}, {"opt": target_opt},
                           torch.device("meta")) == 2
    states = list(target_opt.state.values())
    assert len(states) == len(list(target.parameters()))
    for param, state in zip(target.parameters(), states):
        assert state["step"].device.type == "cpu" and float(state["step"]) == 2.0
        assert state["exp_avg"].device == param.device == torch.device("meta")
        assert state["exp_avg_sq"].device.type == "meta"


def test_a_resumed_cpu_optimizer_continues_exactly(tmp_path):
    model, opt = _trained()
    save_checkpoint(tmp_path / "c.safetensors", 2, {"model": model}, {"opt": opt})
    again, again_opt = _trained()
    for p in again.parameters():
        p.data.zero_()
    load_checkpoint(tmp_path / "c.safetensors", {"model": again}, {"opt": again_opt}, torch.device("cpu"))
    for a, b in zip(opt.state.values(), again_opt.state.values()):
        assert a["step"].device.type == b["step"].device.type == "cpu"
        for key in a:
            assert torch.equal(a[key], b[key]), key
    x = torch.randn(5, 4)
    for m, o in ((model, opt), (again, again_opt)):
        m(x).square().mean().backward()
        o.step()
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def _forbid_cuda(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU machine
    for name in ("get_rng_state", "set_rng_state"):
        monkeypatch.setattr(torch.cuda, name, lambda *a, _n=name, **k: calls.append(_n) or torch.zeros(8, dtype=torch.uint8))
    return calls


def test_a_cpu_run_on_a_gpu_machine_never_touches_the_cuda_rng(tmp_path, monkeypatch):
    calls = _forbid_cuda(monkeypatch)
    model, opt = _trained()
    save_checkpoint(tmp_path / "c.safetensors", 2, {"model": model}, {"opt": opt})
    load_checkpoint(tmp_path / "c.safetensors", {"model": model}, {"opt": opt}, torch.device("cpu"))
    assert calls == []
    with safe_open(str(tmp_path / "c.safetensors"), "pt") as f:
        assert "rng.cuda" not in f.keys()


def test_a_cuda_run_saves_and_restores_the_cuda_rng_of_its_device(tmp_path, monkeypatch):
    calls = _forbid_cuda(monkeypatch)
    model, opt = _trained()
    monkeypatch.setattr(checkpoint, "_cuda_device", lambda modules: torch.device("cuda:1"))
    save_checkpoint(tmp_path / "c.safetensors", 2, {"model": model}, {"opt": opt})
    assert calls == ["get_rng_state"]
    load_checkpoint(tmp_path / "c.safetensors", {"model": model}, {"opt": opt}, torch.device("cpu"))
    assert calls == ["get_rng_state"]  # a CUDA checkpoint resumed on the CPU leaves CUDA alone
    load_checkpoint(tmp_path / "c.safetensors", {"model": model}, {"opt": opt}, torch.device("cuda:1"))
    assert calls == ["get_rng_state", "set_rng_state"]


class _OnCuda(nn.Module):
    """A module that reports one parameter on cuda:3 (no GPU needed)."""

    def parameters(self, recurse=True):
        yield SimpleNamespace(is_cuda=True, device=torch.device("cuda:3"))


def test_the_cuda_device_is_read_off_the_modules():
    assert checkpoint._cuda_device({"model": nn.Linear(2, 2)}) is None
    assert checkpoint._cuda_device({"a": nn.Linear(2, 2), "b": nn.Linear(2, 2).to("meta")}) is None
    assert checkpoint._cuda_device({"a": nn.Linear(2, 2), "b": _OnCuda()}) == torch.device("cuda:3")
