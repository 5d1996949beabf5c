"""GPU memory inside a run's process: the share of its GPU a packed run may allocate
(`--gpus-per-run 0.5`), and the failed record's error when the run ran out of memory.

Nothing here touches `torch.cuda` unless the run's device is a CUDA device: a CPU run (every Ray CPU
task on a GPU machine among them) must not open a CUDA context.
"""
from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from bench.runs.config import ResolvedRun

# torch's out-of-memory error: torch.OutOfMemoryError since torch 2.5 (torch.cuda.OutOfMemoryError names it);
# before, only the CUDA one existed.
OutOfMemoryError: type[RuntimeError] = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
_GIB = 2**30
_UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}
_SIZE = r"([0-9.]+ (?:B|KiB|MiB|GiB|TiB))"
# Phrases of torch's CUDA caching allocator's message (c10/cuda/CUDACachingAllocator.cpp, torch 2.x).
_ASKED = re.compile(r"Tried to allocate " + _SIZE)
_CAPACITY = re.compile(r"total capacity of " + _SIZE + r" of which " + _SIZE + r" is free")


def ray_gpu_share() -> float | None:
    """The amount of GPU Ray reserved for the task or actor running in this process (0.5 for a run
    started with --gpus-per-run 0.5); None outside a Ray worker or without a GPU. Read from Ray rather
    than passed down, so it is what the run was given, by either Ray backend."""
    ray = sys.modules.get("ray")  # never imported here: a process that has not loaded Ray is not a Ray worker
    if ray is None or not ray.is_initialized():
        return None
    try:
        gpus = ray.get_runtime_context().get_assigned_resources().get("GPU")
    except Exception:  # noqa: BLE001 - a driver process (Ray asserts worker mode) or an older Ray: no share
        return None
    return float(gpus) if gpus else None


def limit_to_share(device: torch.device, share: float | None) -> float | None:
    """Cap the caching allocator of this process at `share` of the GPU's memory when the run uses
    CUDA and shares its GPU (0 < share < 1); call it before the run allocates. Ray places packed runs by
    the numbers only, so without the cap one run can take the memory its neighbour was promised and
    both fail. Returns the fraction set, or None (a CPU run: torch.cuda is not touched)."""
    if device.type != "cuda" or share is None or not 0 < share < 1:
        return None
    torch.cuda.set_per_process_memory_fraction(float(share), device.index)  # index None: the current device
    return float(share)


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's out-of-memory error, or the plain RuntimeError that older torch versions and some
    kernels raise with the same words."""
    return isinstance(exc, OutOfMemoryError) or isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def out_of_memory_message(run: ResolvedRun, device: torch.device, exc: BaseException, in_evaluation: bool,
                          share: float | None) -> str:
    """What to say of an out-of-memory error `exc` instead of torch's message (the failed record's
    error after the type's name): one line naming the preset, the batch that did not fit, the memory
    torch asked for and what the device had, and the fixes."""
    text = str(exc)
    asked = _ASKED.search(text)
    capacity = _CAPACITY.search(text)
    total, free = (_bytes(capacity.group(1)), _bytes(capacity.group(2))) if capacity else _device_memory(device)
    if in_evaluation:
        batch = f"an evaluation batch of {run.train.eval_batch_size} images at {run.model.resolution} px"
    else:
        batch = (f"a micro-batch of {run.micro_batch} images at {run.model.resolution} px (global batch "
                 f"{run.train.batch_size} = {run.config.workers} worker(s) x {run.accumulation} accumulation "
                 f"step(s) x {run.micro_batch})")
    where = f"{device}" + (f", limited to {share:g} of it (--gpus-per-run {share:g})" if share else "")
    parts = [f"out of memory on {where} in {'evaluation' if in_evaluation else 'training'} "
             f"with preset {run.preset!r}, {batch}"]
    if asked:
        parts.append(f"torch tried to allocate {asked.group(1)}")
    if total is not None:
        parts.append(f"the device has {total / _GIB:.2f} GiB in all" + ("" if free is None else
                                                                         f", {free / _GIB:.2f} GiB free"))
    return "; ".join(parts) + f". To fit: {_fixes(run, share, in_evaluation)}"


def _fixes(run: ResolvedRun, share: float | None, in_evaluation: bool) -> str:
    from bench.runs.presets import PRESETS

    fixes = []
    if share:
        fixes.append("fewer runs per GPU (--gpus-per-run 1)")
    micro, workers = run.micro_batch, run.config.workers
    if not in_evaluation and run.train.micro_batch is None and micro % 2 == 0:
        # Without a preset micro-batch the global batch is split over the workers: twice the workers,
        # half the images per forward.
        fixes.append(f"smaller micro-batches (--workers-per-run {2 * workers}: {micro // 2} images per forward on "
                     f"each of {2 * workers} GPUs)")
    what = "eval_batch_size" if in_evaluation else "micro_batch (gradient accumulation keeps the global batch)"
    fixes.append(f"a preset with a smaller {what} (bench/runs/presets.py)")
    smaller = sorted((p for p in PRESETS.values() if p.model.resolution < run.model.resolution),
                     key=lambda p: -p.model.resolution)
    if smaller:
        fixes.append(f"a smaller preset (--preset {smaller[0].name}, {smaller[0].model.resolution} px)")
    return ", or ".join(fixes)


def _device_memory(device: torch.device) -> tuple[int | None, int | None]:
    """(total, free) bytes of a CUDA device where torch can say; (None, None) otherwise."""
    if device.type != "cuda":
        return None, None
    try:
        free, total = torch.cuda.mem_get_info(device)
    except Exception:  # noqa: BLE001 - the error message must be written even if the device cannot answer
        return None, None
    return int(total), int(free)


def _bytes(size: str) -> int:
    number, unit = size.split()
    return int(float(number) * _UNITS[unit])
