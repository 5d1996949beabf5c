"""What one run asks a scheduler for (CPUs, whole or fractional GPUs, memory, custom resources) and
how many such runs fit on a set of nodes. Plain numbers in Ray's resource names; no Ray import."""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.core.errors import UserError
from bench.runs.config import RunConfig

_MEMORY_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20, "mib": 2**20,
                 "g": 2**30, "gb": 2**30, "gib": 2**30, "t": 2**40, "tb": 2**40, "tib": 2**40}


def parse_memory(text: str | float) -> int:
    """Bytes from `8G`, `512MiB`, `1.5g` or a plain number of bytes (units are binary: G = 2^30)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
        if not m or m.group(2).lower() not in _MEMORY_UNITS:
            raise UserError(f"memory must look like 8G, 512M or a number of bytes, got {text!r}")
        value, unit = float(m.group(1)), m.group(2).lower()
    nbytes = int(value * _MEMORY_UNITS[unit])
    if nbytes < 1:
        raise UserError(f"memory per run must be positive, got {text!r}")
    return nbytes


@dataclass(frozen=True)
class Resources:
    """What one run asks Ray for. Ray only schedules by these numbers; it does not limit a run to them
    (except GPUs: CUDA_VISIBLE_DEVICES), so ask for what a run really uses."""

    cpus: float = 1.0  # also the run's torch thread count (at least 1)
    gpus: float | None = None  # None: 1 when the cluster has GPUs and the run's device is not cpu, else 0.
    # Fractions below 1 pack runs onto one GPU (0.5: two runs per GPU); above 1 must be whole.
    memory: int | None = None  # bytes of Ray's logical `memory` resource; None: not scheduled by memory
    custom: dict[str, float] = field(default_factory=dict)  # custom node resources, e.g. {"A100": 1}

    def __post_init__(self) -> None:
        if not self.cpus > 0:
            raise UserError(f"CPUs per run must be positive, got {self.cpus}")
        if self.gpus is not None:
            if self.gpus < 0:
                raise UserError(f"GPUs per run must be >= 0, got {self.gpus}")
            if self.gpus > 1 and self.gpus != int(self.gpus):
                raise UserError(f"GPUs per run above 1 must be a whole number, got {self.gpus}")
        for name, amount in self.custom.items():
            if not amount > 0:
                raise UserError(f"resource {name!r} per run must be positive, got {amount}")

    def request(self, config: RunConfig, cluster_gpus: float) -> dict[str, float]:
        """The resource dict of one run, Ray's names (CPU, GPU, memory, custom)."""
        gpus = self.gpus
        if gpus is None:
            on_cpu = (config.device or "").startswith("cpu")
            gpus = 1.0 if cluster_gpus > 0 and not on_cpu else 0.0
        req = {"CPU": float(self.cpus), **{k: float(v) for k, v in self.custom.items()}}
        if gpus:
            req["GPU"] = float(gpus)
        if self.memory:
            req["memory"] = float(self.memory)
        return req

    @property
    def threads(self) -> int:
        return max(1, math.floor(self.cpus))


def fits(request: dict[str, float], node: dict[str, float]) -> bool:
    """Whether a node with these total resources can host one run with this request."""
    return all(node.get(k, 0.0) + 1e-9 >= v for k, v in request.items())


def capacity(request: dict[str, float], nodes: Sequence[dict[str, float]]) -> int:
    """How many runs with this request fit at once on these nodes (their total resources)."""
    total = 0
    for node in nodes:
        if fits(request, node):
            per = [math.floor(node.get(k, 0.0) / v + 1e-9) for k, v in request.items() if v > 0]
            total += min(per) if per else 1
    return total
