"""`run_one(config)`: train, evaluate and record one grid cell. The same function runs in-process,
in a Ray task or on a GPU node.

Bad input raises UserError before the run folder exists. Once it exists, the folder never stays
without a record: anything the run raises ends in a failed record (same keys as a finished one).
The only exception is an interruption (Ctrl-C, a cancelled task), which leaves the checkpoint and
no record, so that the next call resumes the run; a killed worker leaves the same, by force.

A failed run keeps its folder, checkpoint included: the next call resumes it from its last
checkpoint (a transient error, such as running out of GPU memory beside another run, costs the steps
since that checkpoint, not the run), and its record, when that call ends, replaces the failed one
and lists the earlier errors in `resumed_after_failure`. Only `force` starts a run over. An error
the run makes every time (a bad option the method only finds when it builds) fails again in
seconds: everything before the first step is reading the checkpoint and building the models.

Data-parallel (every worker of a torch.distributed group calls `run_one` with the same config, whose
`workers` is the group's size): rank 0 prepares the run folder, every rank trains, rank 0 alone
evaluates and writes the record while the others wait at a barrier, then they return rank 0's
record. An error in training raises on every rank without a record: the other ranks are inside a
collective that cannot complete, so the group must be stopped and the launcher decides whether the
error is the run's own (a failed record) or a lost worker (a restart from rank 0's checkpoint): the
ray-train backend does (bench/scheduling/backends/ray_train.py). One worker behaves as before.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

import torch

import datasets
from bench.core import run_folder
from bench.core.atomic import write_json_atomic
from bench.core.errors import UserError
from bench.core.images import to_float
from bench.core.paths import REPO_ROOT
from bench.evaluation.evaluator import evaluate
from bench.runs import lease, records
from bench.runs.config import ResolvedRun, RunConfig, resolve
from bench.runs.cuda_memory import (OutOfMemoryError, is_out_of_memory, limit_to_share, out_of_memory_message,
                                    ray_gpu_share)
from bench.runs.records import RunRecord
from bench.training import curves, determinism
from bench.training.loop import pick_device, train
from bench.training.replicas import Replicas, current
from methods import distributed

DEFAULT_OUT = REPO_ROOT / "results"


def finished_record(run: ResolvedRun, out: Path | str) -> dict[str, Any] | None:
    """The finished record of this run under `out`, marked skipped; None when it has none."""
    existing = records.read_record(run_folder.run_dir(out, run.run_id))
    if existing is not None and existing.get("status") == records.FINISHED:
        return {**existing, "skipped": True}
    return None


def earlier_failures(record: dict[str, Any] | None) -> list[str] | None:
    """The errors of a run's earlier failed attempts, oldest first, when `record` (what its folder
    holds) is a failed one: what the record of the attempt that resumes it keeps. None otherwise."""
    if record is None or record.get("status") != records.FAILED:
        return None
    return [*(record.get("resumed_after_failure") or []), record.get("error") or "(no error recorded)"]


def run_one(config: RunConfig, out: Path | str = DEFAULT_OUT, force: bool = False, progress: bool = True,
            on_checkpoint: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run one config to a record (dict). A finished record is returned as is unless `force`."""
    run = resolve(config)
    replicas = current()
    if replicas.world_size != config.workers:
        raise UserError(f"{run.describe()} asks for {config.workers} data-parallel worker(s) but runs in a group of "
                        f"{replicas.world_size}; run it with the ray-train backend (--workers-per-run "
                        f"{config.workers}), or with workers={replicas.world_size}")
    run_dir = run_folder.run_dir(out, run.run_id)
    # Every rank reads the same folder: a finished record there makes them all return now, and nothing
    # deletes a finished record without `force` (which every rank is given), so they agree.
    if not force and (done := finished_record(run, out)) is not None:
        return done
    # A failed record stays until this attempt's record replaces it (atomically): a crash meanwhile
    # leaves the run failed, never without a record.
    earlier = None if force else earlier_failures(records.read_record(run_dir))
    t0 = time.perf_counter()
    device = pick_device(config.device)
    determinism.configure(config.deterministic, device)  # before this run's first CUDA call
    share = limit_to_share(device, ray_gpu_share())  # before the run allocates or its folder changes; None on CPUs
    if replicas.is_main:  # the others leave the folder alone: train() waits for rank 0 before reading it
        if run_dir.exists() and force:
            lease.clear_run_folder(run_dir)  # start over, checkpoint and all; the driver's lease stays
        run_dir.mkdir(parents=True, exist_ok=True)
    context = dict(versions=records.versions(), device=str(device), torch_threads=torch.get_num_threads(),
                   compiled=config.compile, data_root=config.data_root, optimization=run.optimization(),
                   preset_source=run.preset_source, resumed_after_failure=earlier,
                   deterministic=config.deterministic, lease_taken_over=lease.taken_over(run_dir),
                   bits_budget=config.bits_budget)
    splits: dict[str, Any] = {}
    trained: list[bool] = []  # set once training has ended: the group is past its last collective of training
    try:
        record = _train_and_evaluate(run, run_dir, device, splits, progress, on_checkpoint, context, replicas, trained)
    except KeyboardInterrupt:
        raise  # interrupted, not failed: no record, the checkpoint stays, the next call resumes
    except Exception as exc:  # noqa: BLE001 - every failure of the run becomes its record (module docstring)
        oom = out_of_memory_message(run, device, exc, bool(trained), share) if is_out_of_memory(exc) else None
        if replicas.active and not (trained and replicas.is_main):
            if oom is not None:  # the launcher records this error: it says what did not fit, and the fix
                raise OutOfMemoryError(oom) from exc
            raise  # in a group only rank 0's evaluation records its own failure (module docstring)
        record = RunRecord.from_exception(run.run_id, run.to_dict(), exc, **context)
        if oom is not None:
            record.error = f"{type(exc).__name__}: {oom}"
    if record is not None:
        record.close(splits, t0, out)
    if not replicas.active:
        return record.to_json()
    replicas.barrier()  # rank 0 has written the record
    return record.to_json() if record is not None else _read_written(run_dir)


def _read_written(run_dir: Path) -> dict[str, Any]:
    """The record rank 0 wrote, as the other ranks of its group return it."""
    written = records.read_record(run_dir)
    if written is None:
        raise RuntimeError(f"rank 0 passed the barrier without a record in {run_dir}")
    return written


def _train_and_evaluate(run: ResolvedRun, run_dir: Path, device: torch.device, splits: dict[str, Any], progress: bool,
                        on_checkpoint: Callable[[int], None] | None, context: dict[str, Any], replicas: Replicas,
                        trained: list[bool]) -> RunRecord | None:
    """The finished record (rank 0), or None on the other ranks of a group, which do not evaluate."""
    resolution = run.model.resolution
    for split in ("train", "val"):
        splits[split] = datasets.create(run.dataset, split, resolution, run.config.data_root, **run.data_options())
    result = train(run, splits["train"], run_dir, device, on_checkpoint=on_checkpoint, progress=progress,
                   compile=run.config.compile, replicas=replicas)
    trained.append(True)
    if not replicas.is_main:
        return None
    reference = (fixed_fid_reference(run.fid_reference, run.dataset, resolution, run.config.data_root,
                                     run.data_options(), device) if run.train.perceptual_metrics else None)
    metrics, protocol = evaluate(result.model, splits["val"], run_dir, device, run.train.eval_batch_size,
                                 run.train.num_workers, perceptual=run.train.perceptual_metrics,
                                 fixed_reference=reference)
    positions, per_position = _code_layout(result.model, splits["val"], device)
    if run.config.tensorboard:
        curves.write_hparams(run_dir, run.to_dict(), metrics)
    labels = result.model.quantizer.code_labels()
    if labels is not None:  # index-aligned with the code histogram, for the figures
        write_json_atomic(run_dir / run_folder.CODE_WORDS, labels)
    return RunRecord(run.run_id, records.FINISHED, run.to_dict(), metrics=metrics, protocol=protocol,
                     steps_done=result.steps, resumed_from=result.resumed_from,
                     checkpoint_discarded=result.discarded_checkpoint, train_s=result.train_s,
                     perceptual=result.perceptual, final_train_logs=result.last_logs,
                     tokens=positions, indices_per_image=positions * per_position,
                     **code_bits(result.model.quantizer, positions, resolution), **context)


def fixed_fid_reference(choice: Any, dataset: str, resolution: int, data_root: str | None,
                        data_options: dict[str, Any], device: torch.device) -> Any:
    """The statistics of a --fid-reference other than val (None for val), before the evaluation: for
    `train:N`, N images of the training split in a fixed view (centre crop, no flip, for datasets read
    from files, as the generation reference: a random crop would make every run's reference differ),
    through the reference cache under that view's name."""
    from bench.evaluation.metrics import fid, fid_reference, fid_reference_choice

    if not choice.fixed:
        return None
    if choice.kind != fid_reference_choice.TRAIN:
        return fid_reference.fixed_reference(choice)
    reads_files = datasets.entry(dataset).reads_files
    options = dict(data_options, **({"train_crop": "center", "hflip": False} if reads_files else {}))
    view = datasets.create(dataset, "train", resolution, data_root, **options)
    key = {"dataset": dataset, "split": "train-center-noflip" if reads_files else "train", "resolution": resolution}
    return fid_reference.fixed_reference(choice, view, device, fid.get_extractor(device), protocol=key)


def code_bits(quantizer: Any, positions: int, resolution: int) -> dict[str, float]:
    """The record's bit budget of one image (`Quantizer.bits_per_image`: positions x the sum of log2 of
    each index level's codebook size, unless a method says otherwise), and that over its pixels. Images
    are square (datasets give (3, R, R)), so the latent grid is too."""
    side = math.isqrt(positions)
    bits = quantizer.bits_per_image(side, positions // side)
    return {"bits_per_image": bits, "bits_per_pixel": bits / (resolution * resolution)}


@torch.no_grad()
def _code_layout(model: torch.nn.Module, dataset: Any, device: torch.device) -> tuple[int, int]:
    """(code positions per image, indices per position), read off one encoded image: methods with
    several codes per position (VQCT's top-k adjectives and noun, residual levels) emit (B, H, W, L)."""
    model.eval()
    with distributed.local_only():  # rank 0 alone reads the layout: a collective here would hang the others
        _, out = model(to_float(dataset[0][None].to(device)))
    b, h, w = out.indices.shape[:3]
    return h * w, (out.indices.shape[3] if out.indices.ndim == 4 else 1)
