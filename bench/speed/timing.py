"""Wall-clock timing: medians after warm-up, and paired medians of two functions timed alternately.
CUDA work is synchronized before every clock read."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

# A call slower than this is measured with fewer repetitions: the big shapes take seconds each.
_SLOW_CALL_MS = 1000.0


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _times_ms(fn: Callable[[], Any], device: torch.device, reps: int) -> list[float]:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def _warm(fn: Callable[[], Any], device: torch.device, warmup: int, reps: int) -> int:
    """Run the warm-up calls; returns the repetitions to measure (fewer for calls over a second)."""
    first = _times_ms(fn, device, 1)[0]
    if first > _SLOW_CALL_MS:
        return min(reps, 3)
    _times_ms(fn, device, warmup - 1)
    return reps


def median_ms(fn: Callable[[], Any], device: torch.device, warmup: int = 2, reps: int = 5) -> float:
    reps = _warm(fn, device, warmup, reps)
    return statistics.median(_times_ms(fn, device, reps))


def paired_median_ms(fn_a: Callable[[], Any], fn_b: Callable[[], Any], device: torch.device, warmup: int = 2,
                     reps: int = 5) -> tuple[float, float]:
    """Medians of two functions timed alternately (a, b, a, b, ...), so that a slow spell of a noisy
    machine hits both: their ratio is what the targets are about. Each is warmed up on its own first,
    and a call over a second cuts the repetitions (the big shapes)."""
    reps = min(_warm(fn_a, device, warmup, reps), _warm(fn_b, device, warmup, reps))
    medians = _round_robin({"a": fn_a, "b": fn_b}, device, reps)
    return medians["a"], medians["b"]


def interleaved_median_ms(fns: dict[str, Callable[[], Any]], device: torch.device, reps: int = 3,
                          warmup: int = 1) -> dict[str, float]:
    """Median ms of each function, called round-robin after `warmup` rounds of the same order (the
    Inception variants, whose first calls are alike in cost: no per-function warm-up policy)."""
    for _ in range(warmup):
        for fn in fns.values():
            _times_ms(fn, device, 1)
    return _round_robin(fns, device, reps)


def _round_robin(fns: dict[str, Callable[[], Any]], device: torch.device, reps: int) -> dict[str, float]:
    """Each function's median over `reps` rounds of a, b, c, a, b, c, ...: a slow spell of a shared
    machine hits every one alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            times[name] += _times_ms(fn, device, 1)
    return {name: statistics.median(t) for name, t in times.items()}
