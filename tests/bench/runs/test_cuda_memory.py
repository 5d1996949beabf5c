"""GPU memory in a run's process, on the CPU with a mocked torch.cuda: a packed run (--gpus-per-run
0.5) caps its allocator at its share before it allocates, a CPU run never touches torch.cuda, and an
out-of-memory error becomes a failed record that names what did not fit and the fix."""
from __future__ import annotations

import types

import pytest
import torch

import bench.runs.runner as runner
from bench.core import run_folder
from bench.runs import cuda_memory
from bench.runs.config import RunConfig, resolve
from bench.runs.cuda_memory import is_out_of_memory, limit_to_share, out_of_memory_message


class _NoCuda(types.ModuleType):
    """torch.cuda for a run that must not use it: any attribute read fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"torch.cuda.{name} touched by a CPU run")


def _cfg(**kw) -> RunConfig:
    return RunConfig(**{"method": "vqgan", "preset": "smoke", "codebook_size": 16, "steps": 6, **kw})


def test_a_cuda_run_sharing_its_gpu_caps_its_memory_at_its_share(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, d=None: calls.append((f, d)))
    assert limit_to_share(torch.device("cuda:1"), 0.5) == 0.5
    assert limit_to_share(torch.device("cuda"), 0.25) == 0.25
    assert calls == [(0.5, 1), (0.25, None)]  # None: torch's current device (the one Ray made visible)
    assert limit_to_share(torch.device("cuda:0"), 1.0) is None and limit_to_share(torch.device("cuda:0"), None) is None
    assert len(calls) == 2  # a whole GPU is not capped


def test_a_cpu_run_never_touches_torch_cuda(monkeypatch):
    monkeypatch.setattr(torch, "cuda", _NoCuda("torch.cuda"))
    assert limit_to_share(torch.device("cpu"), 0.5) is None
    run = resolve(_cfg())
    message = out_of_memory_message(run, torch.device("cpu"), RuntimeError("out of memory"), False, None)
    assert "out of memory on cpu" in message and "GiB in all" not in message  # no device to ask


def test_outside_a_ray_worker_there_is_no_share(monkeypatch):
    assert cuda_memory.ray_gpu_share() is None  # no Ray in this process
    fake_ray = types.SimpleNamespace(is_initialized=lambda: True, get_runtime_context=lambda: types.SimpleNamespace(
        get_assigned_resources=lambda: {"CPU": 1.0, "GPU": 0.5}))
    monkeypatch.setitem(__import__("sys").modules, "ray", fake_ray)
    assert cuda_memory.ray_gpu_share() == 0.5

    def driver_context():
        raise AssertionError("This method is only available when the process is a worker")

    fake_ray.get_runtime_context = driver_context
    assert cuda_memory.ray_gpu_share() is None


@pytest.mark.parametrize("exc, expected", [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB."), True),
    (RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB."), True),  # older torch, some kernels
    (RuntimeError("loss became nan at step 3"), False), (ValueError("out of memory"), False)])
def test_out_of_memory_errors_are_recognised(exc, expected):
    assert is_out_of_memory(exc) is expected


def test_a_packed_cuda_run_caps_its_memory_before_training_and_its_oom_record_says_what_to_change(tmp_path,
                                                                                                 monkeypatch):
    """run_one on a "CUDA" device (mocked): the cap is set before training allocates, and the
    out-of-memory record, without sizes in torch's message, reads them from the device."""
    events = []
    monkeypatch.setattr(runner, "pick_device", lambda name: torch.device("cuda:0"))
    monkeypatch.setattr(runner, "ray_gpu_share", lambda: 0.5)
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, d=None: events.append(("cap", f, d)))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (3 * 2**30, 40 * 2**30))

    def train(run, dataset, run_dir, device, **kw):
        events.append(("train", str(device)))
        raise torch.OutOfMemoryError("CUDA out of memory.")

    monkeypatch.setattr(runner, "train", train)
    config = RunConfig(method="vqgan", preset="paper", codebook_size=16)
    rec = runner.run_one(config, tmp_path, progress=False)
    assert events == [("cap", 0.5, 0), ("train", "cuda:0")]
    assert rec["status"] == "failed" and "\n" not in rec["error"]
    assert rec["error"] == (
        "OutOfMemoryError: out of memory on cuda:0, limited to 0.5 of it (--gpus-per-run 0.5) in training with "
        "preset 'paper', a micro-batch of 8 images at 256 px (global batch 16 = 1 worker(s) x 2 accumulation step(s) "
        "x 8); the device has 40.00 GiB in all, 3.00 GiB free. To fit: fewer runs per GPU (--gpus-per-run 1), or a "
        "preset with a smaller micro_batch (gradient accumulation keeps the global batch) (bench/runs/presets.py), "
        "or a smaller preset (--preset gpu, 128 px)")
    assert (run_folder.run_dir(tmp_path, rec["run_id"]) / run_folder.RECORD).exists()


def test_out_of_memory_in_evaluation_names_the_evaluation_batch():
    run = resolve(_cfg(preset="gpu"))
    exc = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.50 GiB. GPU 0 has a total capacity of "
                                 "15.77 GiB of which 1.00 GiB is free.")
    message = out_of_memory_message(run, torch.device("cpu"), exc, True, None)
    assert message.startswith("out of memory on cpu in evaluation with preset 'gpu', an evaluation batch of 64 "
                              "images at 128 px; torch tried to allocate 1.50 GiB; the device has 15.77 GiB in all, "
                              "1.00 GiB free.")
    assert "smaller eval_batch_size" in message and "--preset cpu-tiny" in message and "--gpus-per-run" not in message


def test_out_of_memory_on_a_data_parallel_rank_reraises_with_the_message_for_the_launcher(tmp_path, monkeypatch):
    """A rank of a group records nothing (its peers wait in a collective): the error it raises is what the
    ray-train driver records, so it carries the same one line."""
    rank_1 = types.SimpleNamespace(rank=1, world_size=2, is_main=False, active=True, barrier=lambda: None)
    monkeypatch.setattr(runner, "current", lambda: rank_1)

    def train(*a, **kw):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 MiB.")

    monkeypatch.setattr(runner, "train", train)
    with pytest.raises(torch.OutOfMemoryError) as err:
        runner.run_one(_cfg(preset="paper", workers=2), tmp_path, progress=False)
    assert str(err.value).startswith("out of memory on cpu in training with preset 'paper', a micro-batch of 8 images")
    assert "torch tried to allocate 64.00 MiB" in str(err.value)
    assert isinstance(err.value.__cause__, torch.OutOfMemoryError)  # torch's own error and traceback stay attached
