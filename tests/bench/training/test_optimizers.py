"""bench.training.optimizers: torch's Adam/AdamW without the CUDA-graph capture check for an optimizer
whose parameters are all on the CPU (the check asks CUDA, opening a context on a GPU machine), with
the check kept for parameters elsewhere, and the same updates and state dicts as torch's."""
import pytest
import torch
from torch import nn

from bench.training import optimizers

CHECK = "_accelerator_graph_capture_health_check"


@pytest.fixture
def checks(monkeypatch):
    called = []
    if hasattr(torch.optim.Optimizer, CHECK):
        monkeypatch.setattr(torch.optim.Optimizer, CHECK, lambda self: called.append(type(self).__name__))
    return called


@pytest.mark.parametrize("ours, torchs", [(optimizers.Adam, torch.optim.Adam), (optimizers.AdamW, torch.optim.AdamW)])
def test_cpu_parameters_skip_the_check_and_step_like_torch(checks, ours, torchs):
    results = []
    for cls in (ours, torchs):
        torch.manual_seed(0)
        model = nn.Linear(4, 2)
        opt = cls(model.parameters(), lr=1e-2, betas=(0.5, 0.9))
        for _ in range(3):
            opt.zero_grad()
            model(torch.randn(3, 4)).square().sum().backward()
            opt.step()
        results.append((model.state_dict(), opt.state_dict()))
    assert checks == [torchs.__name__] * 3  # torch's own optimizer checked every step; ours never did
    (weights, state), (weights_torch, state_torch) = results
    assert all(torch.equal(weights[k], weights_torch[k]) for k in weights)
    assert state["param_groups"] == state_torch["param_groups"]
    assert all(torch.equal(state["state"][0][k], state_torch["state"][0][k]) for k in state["state"][0])


def test_parameters_off_the_cpu_keep_the_check(checks):
    opt = optimizers.Adam([nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2, device="meta"))])
    getattr(opt, CHECK)()
    assert checks == ["Adam"]
