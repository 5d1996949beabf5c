"""A CPU run on a GPU machine never touches CUDA: training, a checkpoint, an interruption, the resume
from that checkpoint and the evaluation, with `torch.cuda` made to say a GPU is there and to fail on
any other use. (Opening a CUDA context costs GPU memory, and fails outright on a GPU in
exclusive-process mode that another run holds.)"""
import functools
import inspect

import pytest
import torch

from bench.runs.config import RunConfig
from bench.runs.runner import run_one

# Left alone: torch.manual_seed calls torch.cuda.manual_seed_all, which only queues the seed for a
# context opened later and opens none (and `_lazy_init` below raises if anything tries to open one).
ALLOWED = {"is_available", "is_initialized", "manual_seed", "manual_seed_all"}


class CudaUsed(AssertionError):
    pass


@pytest.fixture
def gpu_machine_forbidding_cuda(monkeypatch):
    """torch.cuda as on a GPU machine, except that every use besides asking whether a GPU is there
    raises (and records) CudaUsed."""
    used = []

    def forbidden(name, original=None):
        @functools.wraps(original or forbidden)  # torch's own modules read attributes of some of these
        def call(*args, **kwargs):
            used.append(name)
            raise CudaUsed(f"torch.cuda.{name} called in a CPU run")
        return call

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "_lazy_init", forbidden("_lazy_init"))  # what opening a context goes through
    for name, value in vars(torch.cuda).items():
        if not name.startswith("_") and name not in ALLOWED and inspect.isfunction(value):
            monkeypatch.setattr(torch.cuda, name, forbidden(name, value))
    return used


def test_the_fixture_catches_cuda_use(gpu_machine_forbidding_cuda):
    for call in (torch.cuda.get_rng_state, torch.cuda.synchronize, torch.cuda.current_device,
                 torch.cuda.max_memory_allocated, torch.cuda.set_rng_state):
        with pytest.raises(CudaUsed):
            call()
    assert gpu_machine_forbidding_cuda == ["get_rng_state", "synchronize", "current_device",
                                           "max_memory_allocated", "set_rng_state"]


def test_a_cpu_run_trains_checkpoints_resumes_and_evaluates_without_cuda(tmp_path, gpu_machine_forbidding_cuda):
    cfg = RunConfig(method="vqgan", preset="smoke", codebook_size=16, steps=7, device="cpu")

    def stop_after_first_checkpoint(step: int) -> None:
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_one(cfg, tmp_path, progress=False, on_checkpoint=stop_after_first_checkpoint)
    record = run_one(cfg, tmp_path, progress=False)
    assert gpu_machine_forbidding_cuda == []
    assert record["status"] == "finished", record["error"]
    assert record["resumed_from"] == 5 and record["steps_done"] == 7 and record["device"] == "cpu"
