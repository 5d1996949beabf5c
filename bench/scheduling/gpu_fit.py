"""Whether the runs of a grid fit in their GPU's memory, checked by the driver before any run starts
(the host-memory check of the quantizer's parameters is `methods.registry.validate`, at resolve time).

The estimate is a lower bound: the float32 weights, gradients and Adam moments of everything a run
trains (encoder, decoder, discriminator, and the quantizer by its `Quantizer.parameter_count`),
times the runs that share one GPU. Activations come on top and depend on kernels and precision, so
a grid that passes can still run out of memory (its failed record then says what to change:
bench/runs/cuda_memory.py); one that fails this check cannot fit at all.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence

from bench.core.errors import UserError
from bench.runs.config import ResolvedRun
from bench.runs.presets import ModelPreset


def runs_per_gpu(share: float) -> int:
    """How many runs asking for `share` of a GPU Ray puts on one (0.5: 2; 1 or more: 1)."""
    return max(1, math.floor(1 / share + 1e-9)) if 0 < share < 1 else 1


def training_bytes(run: ResolvedRun) -> int:
    """The lower bound of one run's GPU memory (module docstring), in bytes."""
    import methods
    from methods.registry import TRAINING_BYTES_PER_PARAMETER

    quantizer = methods.entry(run.method).cls.parameter_count(run.codebook_size, run.model.embed_dim,
                                                               run.method_options)
    return (_network_parameters(run.model, run.train.disc_layers) + int(quantizer)) * TRAINING_BYTES_PER_PARAMETER


@functools.lru_cache(maxsize=None)
def _network_parameters(model: ModelPreset, disc_layers: int) -> int:
    """Parameters of a preset's encoder, decoder and discriminator, counted on the meta device (no
    memory, milliseconds). The 1x1 convolutions around the quantizer are left out: a few hundred
    thousand parameters at most, and the estimate stays a lower bound."""
    import torch

    from bench.models.autoencoder import Decoder, Encoder
    from bench.models.discriminator import PatchDiscriminator

    arch = dict(ch=model.ch, ch_mult=model.ch_mult, num_res_blocks=model.num_res_blocks,
                attn_resolutions=model.attn_resolutions, resolution=model.resolution, z_channels=model.z_channels,
                dropout=model.dropout)
    with torch.device("meta"):
        networks = (Encoder(in_channels=3, **arch), Decoder(out_channels=3, **arch),
                    PatchDiscriminator(n_layers=disc_layers))
    return sum(p.numel() for net in networks for p in net.parameters())


def smallest_gpu() -> tuple[str, int] | None:
    """(name, total bytes) of the smallest CUDA GPU this process sees; None without one. Reads the
    device properties only: unlike `torch.cuda.mem_get_info`, that opens no CUDA context, which in the
    driver would hold GPU memory for as long as the grid runs."""
    import torch

    if not torch.cuda.is_available():
        return None
    gpus = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
    if not gpus:
        return None
    smallest = min(gpus, key=lambda p: p.total_memory)
    return smallest.name, int(smallest.total_memory)


def check_gpu_memory(runs: Sequence[tuple[ResolvedRun, float]]) -> None:
    """Refuse (UserError: one line, exit 2) a grid in which some run cannot fit on this machine's GPUs.
    `runs`: each run with the share of one GPU it asks for (0: none; 0.5: two per GPU; 1: a GPU of its
    own per worker). Only runs that use CUDA are checked, and only they make this touch torch.cuda: a
    grid of CPU runs never does."""
    on_gpu = [(run, share) for run, share in runs  # a released checkpoint's evaluation trains nothing
              if isinstance(run, ResolvedRun) and share > 0 and not (run.config.device or "").startswith("cpu")]
    if not on_gpu:
        return
    gpu = smallest_gpu()
    if gpu is None:
        return
    name, total = gpu
    for run, share in on_gpu:
        per_gpu = runs_per_gpu(share)
        one = training_bytes(run)
        if one * per_gpu > total:
            packed = f" x {per_gpu} runs per GPU (--gpus-per-run {share:g}) = {one * per_gpu / 2**30:.1f} GiB" \
                if per_gpu > 1 else ""
            fixes = ["--gpus-per-run 1"] if per_gpu > 1 else []
            raise UserError(
                f"{run.describe()} (preset {run.preset!r}) trains at least {one / 2**30:.1f} GiB of weights, "
                f"gradients and Adam state{packed}, more than the {total / 2**30:.1f} GiB of the GPU here ({name}); "
                f"use {', '.join([*fixes, 'a smaller --codebook-sizes', 'a smaller --preset'])}")
