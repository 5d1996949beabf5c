"""The collective operations stateful quantizers use, so that every data-parallel worker ends a step
with the same codebook.

Gradients are averaged by the trainer; what it cannot see are the updates a quantizer makes to its
own buffers: EMA counts and sums, k-means initialisation, dead-code replacement, Sinkhorn's
marginals. Each of those goes through one of these functions, which reduce over the workers when
torch.distributed is initialised with more than one process and do nothing otherwise:

- statistics are summed (`all_reduce_sum_`), so that N workers update as one batch of N times the
  size would;
- random choices (which encoder outputs seed the k-means, which replace a dead code) are made once,
  on rank 0, from the rows of every worker (`gather_rows`), and sent to all (`broadcast_`): the
  workers' random generators may differ, their codebooks must not.

Inside `local_only()` every function acts as on one worker, whatever the process group: evaluation
runs on rank 0 alone while the other ranks wait (bench.runs.runner), so a collective there would wait
for ranks that never join it (OptVQ's eval-mode Sinkhorn did: a deadlock until the group's timeout).
The evaluator enters it; a quantizer's own eval-mode code that reaches these functions enters it too.

NCCL reduces only GPU tensors; a CPU tensor goes through the GPU and back.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.distributed as dist
from torch import Tensor


_LOCAL_ONLY: ContextVar[bool] = ContextVar("vqbench_local_only", default=False)


@contextmanager
def local_only() -> Iterator[None]:
    """Within the block, this process is a group of one: no function here communicates, `rank()` is 0
    and `world_size()` 1. Nests; per thread."""
    token = _LOCAL_ONLY.set(True)
    try:
        yield
    finally:
        _LOCAL_ONLY.reset(token)


def is_distributed() -> bool:
    """True inside a process group of more than one worker, outside `local_only()`."""
    return not _LOCAL_ONLY.get() and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def _on_backend_device(t: Tensor) -> Tensor:
    if dist.get_backend() == "nccl" and t.device.type != "cuda":
        return t.cuda()
    return t


def _reduce(t: Tensor, op: str) -> Tensor:
    if not is_distributed():
        return t
    buf = _on_backend_device(t)
    dist.all_reduce(buf, op=getattr(dist.ReduceOp, op))
    if buf is not t:
        t.copy_(buf)
    return t


def all_reduce_sum_(t: Tensor) -> Tensor:
    """Sum over the workers, in place; the identity on one worker. Returns `t`."""
    return _reduce(t, "SUM")


def all_reduce_min_(t: Tensor) -> Tensor:
    """Elementwise minimum over the workers, in place."""
    return _reduce(t, "MIN")


def all_reduce_max_(t: Tensor) -> Tensor:
    """Elementwise maximum over the workers, in place."""
    return _reduce(t, "MAX")


def broadcast_(t: Tensor, src: int = 0) -> Tensor:
    """Overwrite `t` on every worker with rank `src`'s value, in place."""
    if not is_distributed():
        return t
    buf = _on_backend_device(t)
    dist.broadcast(buf, src=src)
    if buf is not t:
        t.copy_(buf)
    return t


def gather_rows(x: Tensor) -> Tensor:
    """The rows (N_r, D) of every worker concatenated in rank order (sum N_r, D), on every worker.
    Workers may hold different numbers of rows (a last, smaller batch): rows are padded to the
    largest count for the collective and trimmed afterwards."""
    if not is_distributed():
        return x
    n = torch.tensor([x.shape[0]], dtype=torch.long, device=x.device)
    counts = [torch.zeros_like(n) for _ in range(world_size())]
    counts = _all_gather(counts, n)
    largest = max(int(c) for c in counts)
    padded = x.new_zeros((largest, *x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = _all_gather([torch.zeros_like(padded) for _ in range(world_size())], padded)
    return torch.cat([p[: int(c)] for p, c in zip(parts, counts)], dim=0)


def _all_gather(out: list[Tensor], t: Tensor) -> list[Tensor]:
    buf = _on_backend_device(t)
    bufs = [_on_backend_device(o) for o in out]
    dist.all_gather(bufs, buf)
    return [b.to(t.device) for b in bufs]
