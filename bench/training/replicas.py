"""The data-parallel group a training process belongs to: its rank, the number of workers, and the
collective operations the trainer needs. One worker (the default) makes every operation a no-op, so
the trainer has one code path whether it runs alone, with gradient accumulation, or on N workers.

Gradients are averaged with one all-reduce per optimizer step over a flattened copy (not DDP's
bucketed hooks): VQGAN's adaptive GAN weight calls autograd.grad on the decoder's last layer in the
middle of the loss, which DDP's reducer does not expect, and one flat all-reduce keeps workers
exactly in step. Workers are started by a scheduling backend (Ray Train) or by tests
(torch.multiprocessing); both initialise torch.distributed before training.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as dist
from torch import Tensor

from methods import distributed


@dataclass(frozen=True)
class Replicas:
    """This worker's place in the group. The collectives are methods.distributed's (the ones the
    quantizers use), so the trainer and the quantizers reduce the same way, GPU or CPU tensor."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, logs and the record; every rank reads the same checkpoint."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def mean_grads_(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Average the gradients of `params` over the workers, in place (parameters without a
        gradient are skipped; every worker runs the same code, so they are the same on all)."""
        if not self.active:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if grads:
            flat = distributed.all_reduce_sum_(torch.cat([g.reshape(-1) for g in grads]))
            flat.div_(self.world_size)
            offset = 0
            for g in grads:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()

    def sum_(self, tensor: Tensor) -> Tensor:
        """Sum over the workers, in place (code histograms)."""
        return distributed.all_reduce_sum_(tensor) if self.active else tensor

    def broadcast_(self, tensor: Tensor, src: int = 0) -> Tensor:
        return distributed.broadcast_(tensor, src) if self.active else tensor

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


SINGLE = Replicas()


def current() -> Replicas:
    """The group torch.distributed was initialised with in this process, or a single worker."""
    return Replicas(distributed.rank(), distributed.world_size())
