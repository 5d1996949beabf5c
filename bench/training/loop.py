"""Trains one VQ autoencoder: a linear loop over steps. Knows nothing of scheduling: runs the same
in-process, in a Ray worker or on a GPU node. Deterministic given the seed, and resumable from its
last checkpoint with the same result as an uninterrupted run (the data order is a function of the
step, the RNG state is saved with the weights): bit for bit on the CPU, on CUDA only with
--deterministic (docs/scheduling.md, "What is bit-exact, per device")."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from bench.core import run_folder
from bench.core.images import to_float
from bench.evaluation.metrics import keys
from bench.evaluation.metrics.usage import histogram_stats
from bench.models.autoencoder import VQAutoencoder
from bench.runs.config import ResolvedRun
from bench.training import train_log
from bench.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from bench.training.curves import GRID_IMAGES, Curves
from bench.training.replicas import Replicas, current
from bench.training.sampler import StepBatchSampler
from bench.training.step import TrainStep
from datasets.base import ImageDataset


def pick_device(name: str | None) -> torch.device:
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def dataset_head(dataset: ImageDataset, n: int) -> torch.Tensor:
    """The first `n` images of a dataset, uint8 (n, 3, R, R): a fixed set to watch reconstructions of."""
    return torch.stack([dataset[i] for i in range(min(n, len(dataset)))])


def training_loader(dataset: ImageDataset, run: ResolvedRun, device: torch.device, start: int, steps: int,
                    num_workers: int, replicas: Replicas) -> DataLoader:
    """The batches of steps `start` .. `steps` for this worker: the order is a function of (seed, step),
    so a resumed run reads what an uninterrupted one would. bench.speed.loader times this very loader."""
    sampler = StepBatchSampler(len(dataset), run.train.batch_size, run.seed, start, steps,
                               with_epoch=dataset.takes_epoch, part=(replicas.rank, replicas.world_size))
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, pin_memory=device.type == "cuda",
                      persistent_workers=False)


@dataclass
class TrainResult:
    model: VQAutoencoder
    steps: int
    resumed_from: int
    train_s: float
    perceptual: str
    last_logs: dict[str, float] = field(default_factory=dict)
    discarded_checkpoint: str | None = None  # why a damaged checkpoint was set aside and training restarted


def train(run: ResolvedRun, dataset: ImageDataset, run_dir: Path, device: torch.device,
          on_checkpoint: Callable[[int], None] | None = None, progress: bool = True, compile: bool = False,
          replicas: Replicas | None = None) -> TrainResult:
    """Train to `run.train.steps`, resuming from the run folder's checkpoint if there is one. With
    data-parallel `replicas` (default: the torch.distributed group of this process, if any), every
    worker calls this with its own rank; rank 0 writes the checkpoint and the train log, every worker
    resumes from the same checkpoint (the run folder must be on a filesystem they share)."""
    replicas = current() if replicas is None else replicas
    if replicas.world_size != run.config.workers:
        raise ValueError(f"{run.describe()} is configured for {run.config.workers} worker(s) but trains on "
                         f"{replicas.world_size}: the global batch would not be the preset's")
    t = run.train
    torch.manual_seed(run.seed)  # the same initial model on every worker
    learner = TrainStep(run, device, compile=compile, replicas=replicas)
    model = learner.model
    ckpt = run_dir / run_folder.CHECKPOINT
    start, discarded = 0, None
    replicas.barrier()  # rank 0 has prepared the run folder before any worker looks for a checkpoint
    if ckpt.exists():
        try:
            start = load_checkpoint(ckpt, learner.modules, learner.optimizers, device)
        except CheckpointError as exc:
            # A damaged checkpoint (cut short by a full disk, a zero-byte file) costs the steps it held,
            # never the run: it is kept aside for inspection and training restarts from step 0, which
            # gives exactly the result of a run that never had it (the seed fixes the initial model).
            discarded = str(exc)
        replicas.barrier()  # every worker has read it before rank 0 may set a damaged one aside
        if discarded is not None and replicas.is_main:
            ckpt.replace(ckpt.with_name(ckpt.name + ".damaged"))
            print(f"warning: {discarded}; kept as {ckpt.name}.damaged, training restarts from step 0", file=sys.stderr)
    loader = training_loader(dataset, run, device, start, t.steps, t.num_workers, replicas)
    k = model.quantizer.codebook_size
    window = torch.zeros(k, dtype=torch.long)  # code histogram since the last log line
    if replicas.is_main:
        train_log.truncate(run_dir, start)  # entries written after the checkpoint we resume from are redone
    curves = Curves(run_dir, start, enabled=run.config.tensorboard and replicas.is_main)
    grid_images = dataset_head(dataset, GRID_IMAGES).to(device) if curves.active else None
    t0 = time.perf_counter()
    logs: dict[str, float] = {}
    bar = tqdm(total=t.steps, initial=start, disable=not progress or not replicas.is_main, desc=run.method,
               mininterval=1.0, dynamic_ncols=True, leave=False)
    model.train()
    learner.disc.train()
    step = start
    for batch in loader:
        logged = (step + 1) % t.log_every == 0 or step + 1 == t.steps
        terms, indices = learner(to_float(batch.to(device, non_blocking=True)), step, grad_norm=logged)
        step += 1
        window += torch.bincount(indices.reshape(-1).cpu(), minlength=k)
        if logged:
            usage = histogram_stats(replicas.sum_(window))  # every worker's codes (loss terms: rank 0's)
            logs = {"step": step, **{name: float(v) for name, v in terms.items()}, "lr": learner.lr,
                    **learner.scheduled_rates(),
                    keys.UTILIZATION: usage[keys.UTILIZATION], keys.PERPLEXITY: usage[keys.PERPLEXITY],
                    "elapsed_s": time.perf_counter() - t0}
            if replicas.is_main:
                train_log.append(run_dir, logs)
                curves.scalars(logs)
                if curves.wants_images(step, t.log_every, t.steps):
                    curves.reconstructions(model, grid_images, step)
            window.zero_()
            bar.set_postfix(loss=f"{logs['loss']:.4f}", usage=f"{100 * logs[keys.UTILIZATION]:.0f}%")
        bar.update(1)
        if step % t.ckpt_every == 0 or step == t.steps:
            if replicas.is_main:
                save_checkpoint(ckpt, step, learner.modules, learner.optimizers)
            replicas.barrier()  # no worker runs ahead of the checkpoint every worker would resume from
            if on_checkpoint is not None:
                on_checkpoint(step)
    bar.close()
    curves.close()
    return TrainResult(model, step, start, time.perf_counter() - t0, learner.perceptual_name, logs, discarded)
