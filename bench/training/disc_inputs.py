"""The discriminator's fake images recomputed after the autoencoder's update (TrainPreset.disc_inputs =
"after_update"), as VQCT's official loop made them.

With two optimizers, Lightning calls `training_step` once per optimizer, and taming's runs the whole model
each time (`xrec, qloss = self(x)` before looking at `optimizer_idx`): the discriminator's pass sees the
reconstructions of the autoencoder as it is after its optimizer step. vqbench's default reuses the
generator pass's reconstructions, made before that step.

The recomputation runs in training mode, as Lightning's does (VQCT's GCN draws a new dropout mask), under
no_grad (the official pass builds a graph only to detach the result). A quantizer whose training forward
updates its own state (EMA codebooks, usage counts, Gumbel's step) would update it a second time; its
state dict is put back afterwards, so its updates stay once per optimizer step, as the method defines them.
"""
from __future__ import annotations

from typing import Callable, ContextManager, Sequence

import torch
from torch import Tensor, nn


@torch.no_grad()
def reconstructions_after_update(model: nn.Module, micro_batches: Sequence[Tensor], seeds: Sequence[int],
                                 autocast: Callable[[], ContextManager]) -> list[Tensor]:
    """The model's reconstruction of each micro-batch, each pass seeded by its entry of `seeds`; the
    quantizer's state dict is left as it was."""
    quantizer = model.quantizer
    before = {name: value.clone() for name, value in quantizer.state_dict().items()}
    out = []
    for x, seed in zip(micro_batches, seeds):
        torch.manual_seed(seed)
        with autocast():
            xrec, _ = model(x)
        out.append(xrec.detach())
    for name, value in quantizer.state_dict().items():
        # only what changed is written back: an in-place copy bumps a tensor's version, which makes VQCT
        # recompute its cached graph product of the (unchanged) word vectors
        if not torch.equal(value, before[name]):
            value.copy_(before[name])
    return out
