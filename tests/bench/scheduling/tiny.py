"""Test-only fixtures for the scheduling tests: a micro preset (and two presets with a fixed
micro-batch, for the data-parallel tests), two micro datasets, a method whose `prepare` leaves a
trace, and an `on_checkpoint` hook that kills its own worker once.

Nothing is registered on import: other test modules parametrise over the registries, so the test
process registers these only while a scheduling test module runs (`registered()`), and the Ray
workers register them through `worker_imports=(WORKER_MODULE,)`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
from pathlib import Path

import torch

from bench.runs import presets
from datasets import UInt8Images, register_dataset
from methods import register_method
from methods.vqgan import VQGANOptions, VQGANQuantizer

PRESET = "test-micro"
DATASET = "test-noise"
BROKEN_DATASET = "test-broken"
TRACED_METHOD = "test-vqgan-traced"
WORKER_MODULE = "tests.bench.scheduling.tiny_worker"  # what `worker_imports` names: registers what is here
STEPS = 4
CKPT_EVERY = 2

# 16 px, one downsampling, 8 channels, no perceptual metrics (Inception features and a 2048-d matrix
# square root would cost seconds per run): a run takes about a second of compute on one core, so
# the tests time the scheduling rather than the training and evaluation.
_PRESET = presets.Preset(
    PRESET,
    "tests only: 16 px, f=2, 8 channels, 4 steps, checkpoint every 2",
    presets.ModelPreset(resolution=16, ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), z_channels=8,
                       embed_dim=8),
    presets.TrainPreset(batch_size=4, base_lr=1e-3, steps=STEPS, disc_start=10**9, perceptual_weight=0.0, log_every=1,
                       ckpt_every=CKPT_EVERY, eval_batch_size=8, perceptual_metrics=False),
)


# The same recipes with a fixed micro-batch of half the global batch, so one worker accumulates 2
# micro-batches and 2 data-parallel workers take one each (the data-parallel tests compare the two).
SPLIT_PRESET = "test-micro-split"
_SPLIT_PRESET = dataclasses.replace(_PRESET, name=SPLIT_PRESET, description="tests only: test-micro, 2 images per "
                                    "forward pass", train=dataclasses.replace(_PRESET.train, micro_batch=2))
SMOKE_SPLIT_PRESET = "test-smoke-split"
_SMOKE = presets.PRESETS["smoke"]
_SMOKE_SPLIT_PRESET = dataclasses.replace(_SMOKE, name=SMOKE_SPLIT_PRESET, description="tests only: smoke, 4 images "
                                          "per forward pass", train=dataclasses.replace(_SMOKE.train, micro_batch=4))
_PRESETS = (_PRESET, _SPLIT_PRESET, _SMOKE_SPLIT_PRESET)


def _noise(split: str, resolution: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0 if split == "train" else 1)
    # Smooth random images (noise upsampled) so the autoencoder has something learnable.
    low = torch.randint(0, 256, (n, 3, max(1, resolution // 4), max(1, resolution // 4)), generator=g).float()
    return torch.nn.functional.interpolate(low, size=resolution, mode="bilinear").round().to(torch.uint8)


def noise(split: str, resolution: int, root: str | None = None) -> UInt8Images:
    n = 16 if split == "train" else 8
    return UInt8Images(_noise(split, resolution, n), [f"{split}{i}" for i in range(n)],
                       {"dataset": DATASET, "split": split, "resolution": resolution})


class _BrokenImages(UInt8Images):
    """Reading an image raises, as a corrupt file would: a failure of the run itself."""

    def __init__(self, *args, count_file: str = "") -> None:
        super().__init__(*args)
        self.count_file = count_file

    def __getitem__(self, key):
        if self.count_file:  # one line per read attempt, so a test can tell that the run was not retried
            with open(self.count_file, "a") as f:
                f.write(f"{os.getpid()}\n")
        raise RuntimeError("test-broken: this image cannot be decoded")


def broken(split: str, resolution: int, root: str | None = None, count_file: str = "") -> UInt8Images:
    n = 8
    return _BrokenImages(_noise(split, resolution, n), [f"{split}{i}" for i in range(n)],
                         {"dataset": BROKEN_DATASET, "split": split, "resolution": resolution}, count_file=count_file)


@dataclasses.dataclass
class TracedOptions(VQGANOptions):
    trace_dir: str = ""  # prepare() appends "<pid> <node>" to trace_dir/prepare-K<K>.txt


class TracedVQGAN(VQGANQuantizer):
    Options = TracedOptions

    @classmethod
    def prepare(cls, codebook_size: int, dim: int, options: TracedOptions) -> None:
        if options.trace_dir:
            import ray

            node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else "-"
            with open(Path(options.trace_dir) / f"prepare-K{codebook_size}.txt", "a") as f:
                f.write(f"{os.getpid()} {node}\n")


@dataclasses.dataclass(frozen=True)
class KillOnce:
    """`on_checkpoint` hook: the first time any run reaches a checkpoint, SIGKILL the process it runs
    in (a Ray worker), as the OOM killer or a lost node would. The marker file makes it once only.
    `rank`: only that rank of a data-parallel group kills itself (the others train on)."""

    marker: str
    rank: int | None = None

    def __call__(self, step: int) -> None:
        from methods import distributed

        if self.rank is not None and distributed.rank() != self.rank:
            return
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, f"{os.getpid()} {step}\n".encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)


@dataclasses.dataclass(frozen=True)
class BugOnCheckpoint:
    """`on_checkpoint` hook that raises an exception `run_one` does not catch (as a bug would), after
    appending a line to `count_file` so a test can tell how often the run was attempted."""

    count_file: str

    def __call__(self, step: int) -> None:
        with open(self.count_file, "a") as f:
            f.write(f"{os.getpid()} {step}\n")
        raise KeyError("a bug in the run's own code")


def register() -> None:
    """Add the preset, datasets and method to the registries (idempotent)."""
    from datasets import registry as dataset_registry
    from methods import registry as method_registry

    for p in _PRESETS:
        presets.PRESETS[p.name] = p
    if DATASET not in dataset_registry._REGISTRY:
        register_dataset(DATASET, "tests only: 16 train / 8 val smooth random images")(noise)
        register_dataset(BROKEN_DATASET, "tests only: every image read raises RuntimeError")(broken)
    if TRACED_METHOD not in method_registry._REGISTRY:
        register_method(TRACED_METHOD, "tests only: vqgan whose prepare() leaves a trace file")(TracedVQGAN)


def unregister() -> None:
    from datasets import registry as dataset_registry
    from methods import registry as method_registry

    for p in _PRESETS:
        presets.PRESETS.pop(p.name, None)
    for name in (DATASET, BROKEN_DATASET):
        dataset_registry._REGISTRY.pop(name, None)
    method_registry._REGISTRY.remove(TRACED_METHOD)


@contextlib.contextmanager
def registered():
    register()
    try:
        yield
    finally:
        unregister()


@contextlib.contextmanager
def like_a_worker():
    """Run in this process as the Ray workers of the tests do: 1 torch thread (--cpus-per-run 1).
    float32 sums split over another thread count differ in the last bits, and two threads on two
    busy cores are slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
