"""`run_one(config)`: train, evaluate and record one grid cell. The same function runs in-process,
in a Ray task or on a GPU node. Failures are records too; an interrupted run leaves its checkpoint
and no record, so the next call resumes it."""
from __future__ import annotations

import shutil
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch

import datasets

from bench.runs import records
from bench.runs.config import RunConfig, dataset_path, resolve, run_id
from bench.core.errors import UserError
from bench.evaluation.evaluator import evaluate
from bench.training.trainer import NonFiniteLoss, pick_device, train

DEFAULT_OUT = records.REPO_ROOT / "results"


def plan(config: RunConfig) -> tuple[str, dict[str, Any]]:
    """(run id, resolved config); raises UserError on bad input before any work starts."""
    resolved = resolve(config)
    return run_id(resolved), resolved


def run_one(config: RunConfig, out: Path | str = DEFAULT_OUT, force: bool = False, progress: bool = True,
            on_checkpoint: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run one config to a record (dict). A finished record is returned as is unless `force`."""
    rid, resolved = plan(config)
    run_dir = records.runs_dir(Path(out)) / rid
    existing = records.read_record(run_dir)
    if existing is not None and existing["status"] == records.FINISHED and not force:
        return {**existing, "skipped": True}
    if force or (existing is not None and existing["status"] == records.FAILED):
        shutil.rmtree(run_dir, ignore_errors=True)  # start over; a failure is not resumed
    run_dir.mkdir(parents=True, exist_ok=True)

    device = pick_device(config.device)
    record: dict[str, Any] = {
        "run_id": rid, "status": None, "error": None, "config": resolved, "data_root": config.data_root,
        "metrics": {}, "protocol": {}, "versions": records.versions(), "device": str(device),
        # CPU results differ in the last digits with the thread count (reduction order): record it.
        "torch_threads": torch.get_num_threads(),
        "compiled": config.compile,
    }
    t0 = time.perf_counter()
    splits: dict[str, Any] = {}
    try:
        # path, cache, bad-file skipping and the crop seed: how the images are read, not which (see RunConfig)
        data_options = dict(config.dataset_options, path=dataset_path(config), seed=resolved["seed"],
                            cache=config.dataset_cache, skip_bad_images=config.skip_bad_images)
        train_set = splits["train"] = datasets.create(resolved["dataset"], "train", resolved["model"]["resolution"],
                                                      config.data_root, **data_options)
        val_set = splits["val"] = datasets.create(resolved["dataset"], "val", resolved["model"]["resolution"],
                                                  config.data_root, **data_options)
        result = train(resolved, train_set, run_dir, device, on_checkpoint=on_checkpoint, progress=progress,
                       compile=config.compile)
        metrics, protocol = evaluate(result.model, val_set, run_dir, device, resolved["train"]["eval_batch_size"],
                                     resolved["train"]["num_workers"],
                                     perceptual=resolved["train"]["perceptual_metrics"])
        quantizer = result.model.quantizer
        if getattr(quantizer, "words", None):
            # Words of a language-model codebook (VQCT), index-aligned with code_counts.npy, for the figures.
            records.write_json_atomic(run_dir / records.CODE_WORDS_NAME,
                                      {"groups": quantizer.code_groups, "words": list(quantizer.words)})
        record.update(
            status=records.FINISHED, metrics=metrics, protocol=protocol, steps_done=result.steps,
            resumed_from=result.resumed_from, train_s=result.train_s, perceptual=result.perceptual,
            final_train_logs=result.last_logs,
            tokens=(resolved["model"]["resolution"] // result.model.downsample_factor) ** 2,
        )
    except (UserError, NonFiniteLoss, ValueError, RuntimeError) as exc:
        # A failure of the run itself: recorded, never retried. KeyboardInterrupt and a killed
        # worker leave no record, so the run resumes from its checkpoint next time.
        record.update(status=records.FAILED, error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
    # images read, bad files skipped, images upscaled: per split, counted over what this run decoded
    record["data"] = {name: ds.stats() for name, ds in splits.items() if hasattr(ds, "stats")}
    record["wall_s"] = time.perf_counter() - t0
    records.write_json_atomic(run_dir / records.RECORD_NAME, record)
    return record
