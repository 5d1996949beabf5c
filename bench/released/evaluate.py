"""`evaluate_released(job, out)`: one released checkpoint evaluated on one dataset's validation split
and recorded, the way `run_one` evaluates and records a trained run, minus the training.

The same evaluator (bench.evaluation.evaluator.evaluate: the one uint8 boundary, every registered
metric streamed, per-image values, Inception features, the code histogram, the grid) writes into
the same run folder layout, and the record is a RunRecord like a trained run's with three keys more:
`source: "released"`, `checkpoint` (kind, path, SHA-256) and `released` (the loader's description:
every file read with its SHA-256, keys left out and why, notes on where evaluation differs from the
released code). The run-folder rules are run_one's: a finished record is returned unless `force`,
anything the evaluation raises becomes a failed record, an interruption leaves no record.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

import datasets
from bench.core import run_folder
from bench.core.atomic import write_json_atomic
from bench.evaluation.evaluator import evaluate
from bench.released.job import ReleasedEval, ResolvedEval
from bench.released.load import load_released
from bench.runs import lease, records
from bench.runs.records import RunRecord
from bench.runs.runner import _code_layout, finished_record, fixed_fid_reference
from bench.training.loop import pick_device


def evaluate_released(job: ReleasedEval, out: Path | str, force: bool = False, progress: bool = True) -> dict[str, Any]:
    """Evaluate one released checkpoint on one dataset into OUT/runs/<run_id>/; the record (dict)."""
    run = job.resolve()
    run_dir = run_folder.run_dir(out, run.run_id)
    if not force and (done := finished_record(run, out)) is not None:
        return done
    if run_dir.exists():
        lease.clear_run_folder(run_dir)  # forced, failed or interrupted: nothing to resume; the driver's lease stays
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    device = pick_device(job.device)
    context: dict[str, Any] = {"versions": records.versions(), "device": str(device),
                               "torch_threads": torch.get_num_threads(), "compiled": False, "data_root": job.data_root,
                               "optimization": {}, "preset_source": "released checkpoint", "extra": run.record_keys()}
    splits: dict[str, Any] = {}
    try:
        record = _evaluate(run, run_dir, device, splits, context)
    except KeyboardInterrupt:
        raise  # interrupted, not failed: no record; the next call evaluates again
    except Exception as exc:  # noqa: BLE001 - every failure of the evaluation becomes its record, as in run_one
        record = RunRecord.from_exception(run.run_id, run.to_dict(), exc, **context)
    record.close(splits, t0, out)
    return record.to_json()


def _evaluate(run: ResolvedEval, run_dir: Path, device: torch.device, splits: dict[str, Any],
              context: dict[str, Any]) -> RunRecord:
    job = run.config
    released = load_released(job.kind, job.path, job.config_path, job.prior_path)
    if released.description["sha256"] != run.description["sha256"]:
        raise RuntimeError(f"checkpoint {job.path} changed after it was validated (SHA-256 "
                           f"{run.description['sha256'][:12]} then, {released.description['sha256'][:12]} now)")
    splits["val"] = datasets.create(run.dataset, "val", run.resolution, job.data_root, **run.data_options())
    model = released.model.to(device)
    reference = (fixed_fid_reference(run.fid_reference, run.dataset, run.resolution, job.data_root,
                                     run.data_options(), device)
                 if run.fid_reference is not None and job.perceptual_metrics else None)
    metrics, protocol = evaluate(model, splits["val"], run_dir, device, job.eval_batch_size, job.num_workers,
                                 perceptual=job.perceptual_metrics, fixed_reference=reference)
    protocol["released"] = {"trained_resolution": released.description["resolution"],
                            "evaluated_resolution": run.resolution}
    positions, per_position = _code_layout(model, splits["val"], device)
    labels = model.quantizer.code_labels()
    if labels is not None:  # index-aligned with the code histogram, for the figures
        write_json_atomic(run_dir / run_folder.CODE_WORDS, labels)
    return RunRecord(run.run_id, records.FINISHED, run.to_dict(), metrics=metrics, protocol=protocol,
                     tokens=positions, indices_per_image=positions * per_position, **context)
