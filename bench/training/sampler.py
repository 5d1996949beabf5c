"""Batches as a pure function of the step, so that a resumed run sees exactly the batches an
uninterrupted one would have seen."""
from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor
from torch.utils.data import Sampler


class StepBatchSampler(Sampler[list]):
    """Epoch e is a permutation seeded by (seed, e); the batch of step s is positions
    [s * batch, (s + 1) * batch) of the concatenated epochs. With `with_epoch`, keys are
    (index, epoch) so that datasets with random augmentation draw a new crop every epoch.

    With `part=(rank, workers)`, worker `rank` gets its contiguous share of every step's batch, so N
    workers together see exactly the batches one worker would (data-parallel == accumulation)."""

    def __init__(self, n: int, batch_size: int, seed: int, start_step: int, steps: int, with_epoch: bool = False,
                 part: tuple[int, int] = (0, 1)) -> None:
        self.n, self.batch_size, self.seed, self.start, self.steps = n, batch_size, seed, start_step, steps
        self.with_epoch = with_epoch
        rank, workers = part
        if batch_size % workers or not 0 <= rank < workers:
            raise ValueError(f"a batch of {batch_size} does not split into part {rank} of {workers}")
        share = batch_size // workers
        self.offsets = range(rank * share, (rank + 1) * share)

    def _perm(self, epoch: int) -> Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=g)

    def __iter__(self) -> Iterator[list[int]]:
        epoch, perm = -1, None
        for step in range(self.start, self.steps):
            batch = []
            for p in (step * self.batch_size + o for o in self.offsets):
                if p // self.n != epoch:
                    epoch = p // self.n
                    perm = self._perm(epoch)
                index = int(perm[p % self.n])
                batch.append((index, epoch) if self.with_epoch else index)
            yield batch

    def __len__(self) -> int:
        return max(0, self.steps - self.start)
