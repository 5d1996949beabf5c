"""Helpers of the data-parallel tests: train one run on N gloo workers (torch.multiprocessing) or
on one worker with the same global batch, and save what the tests compare."""
from __future__ import annotations

import inspect
import os
import signal
import socket
from pathlib import Path

import torch
import torch.distributed as dist

import datasets
from bench.runs.config import RunConfig, resolve
from bench.training.loop import train
from bench.training.replicas import Replicas

MICRO = 4  # the smoke preset's global batch of 8 = 2 workers x 4, or 1 worker x 2 accumulation steps x 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_for(method: str, workers: int, steps: int, options: dict | None = None, micro: int = MICRO):
    config = RunConfig(method=method, preset="smoke", codebook_size=16, workers=workers, method_options=options or {})
    return resolve(config).with_train(micro_batch=micro, steps=steps, ckpt_every=3)


def fixed_batch(resolution: int) -> torch.Tensor:
    return torch.rand(4, 3, resolution, resolution, generator=torch.Generator().manual_seed(7)) * 2 - 1


def train_and_save(method: str, workers: int, steps: int, run_dir: str, result: str, rank: int = 0,
                   stop_at: int | None = None, options: dict | None = None, micro: int = MICRO,
                   kill_at: tuple[int, int] | None = None) -> None:
    """Train (as `rank` of `workers`), then save the rank's codebook, quantizer state and its
    reconstruction of a fixed batch to `result`. `stop_at`: every worker stops after that checkpoint,
    as a whole-group restart would find it. `kill_at` (rank, step): that rank SIGKILLs itself after
    that checkpoint, as the OOM killer would; the others fail in their next collective. `micro`:
    images per forward pass (the smoke preset's global batch of 8 is 1 worker x 2 x 4 by default; 8
    is the whole batch at once)."""
    torch.set_num_threads(1)
    run = run_for(method, workers, steps, options, micro)
    replicas = Replicas(rank, workers)

    def stop(step: int) -> None:
        if stop_at is not None and step == stop_at:
            raise SystemExit(0)
        if kill_at == (rank, step):
            os.kill(os.getpid(), signal.SIGKILL)

    data = datasets.create("photos", "train", run.model.resolution)
    try:
        out = train(run, data, Path(run_dir), torch.device("cpu"), on_checkpoint=stop, progress=False,
                    replicas=replicas)
    except SystemExit:
        return
    model = out.model.eval()
    with torch.no_grad():
        xrec, q = model(fixed_batch(run.model.resolution))
    torch.save({"quantizer": {k: v.clone() for k, v in model.quantizer.state_dict().items()},
                "codebook": _codebook(model.quantizer), "xrec": xrec, "indices": q.indices, "steps": out.steps}, result)


def _codebook(quantizer: torch.nn.Module) -> torch.Tensor:
    """The codes the quantizer looks up: computed ones (VQCT's GCN without dropout, OptVQ's projection)
    or the stored table (not a usage buffer such as CVQ's `embed_prob`)."""
    if hasattr(quantizer, "codebook") and callable(quantizer.codebook):
        takes_dropout = "dropout" in inspect.signature(quantizer.codebook).parameters
        with torch.no_grad():
            return (quantizer.codebook(dropout=False) if takes_dropout else quantizer.codebook()).clone()
    state = quantizer.state_dict()
    return next(state[k] for k in ("embed", "embedding.weight", "codebook.weight") if k in state).clone()


def _worker(rank: int, workers: int, port: int, method: str, steps: int, run_dir: str, results: str,
            stop_at: int | None, options: dict | None, kill_at: tuple[int, int] | None) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=workers)
    try:
        train_and_save(method, workers, steps, run_dir, f"{results}.rank{rank}", rank, stop_at, options,
                       kill_at=kill_at)
    finally:
        dist.destroy_process_group()


def spawn(method: str, workers: int, steps: int, run_dir: Path, results: Path, stop_at: int | None = None,
          options: dict | None = None, kill_at: tuple[int, int] | None = None) -> None:
    """Train on `workers` gloo processes; a worker that dies (`kill_at`) raises ProcessExitedException here
    after the others are stopped, as a launcher that restarts the group would see it."""
    torch.multiprocessing.spawn(_worker, args=(workers, free_port(), method, steps, str(run_dir), str(results),
                                               stop_at, options, kill_at), nprocs=workers, join=True)
