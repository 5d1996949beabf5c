"""`python -m bench.speed.short_run`: a real run shortened to a few hundred steps, per method, through
the same `run_one` as the benchmark (data loader, training loop, evaluation, record), for the GPU check
(bench/gpu_check.sh). Per method: the training loop's step time and images/s (data loading included),
the peak memory of the whole run, and the quantizer's share of an isolated training step.

The loop's step time is read off the train log between its first and last entries, so the first
steps (allocator warm-up, cuDNN autotuning) do not count; with fewer than two entries it is the
whole training time over the steps.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from bench.core import run_folder
from bench.core.errors import UserError
from bench.runs.presets import PRESETS
from bench.speed.memory import peak_mb
from bench.speed.output import fmt, write_csv
from bench.speed.peers import TRAIN_STEP_METHODS
from bench.speed.training import CODEBOOK_SIZE, train_step_rows

PREFERRED_PRESET, FALLBACK_PRESET = "gpu", "paper"
COLUMNS = ["method", "preset", "steps", "batch", "resolution", "status", "loop_step_ms", "loop_images_per_s",
           "step_ms", "quantizer_ms", "quantizer_share", "peak_mb", "train_s", "eval_s", "fid", "psnr",
           "utilization", "note"]


def default_preset() -> tuple[str, str]:
    """(preset, why): `gpu` where this checkout has it, else `paper`."""
    if PREFERRED_PRESET in PRESETS:
        return PREFERRED_PRESET, ""
    return FALLBACK_PRESET, f"no {PREFERRED_PRESET!r} preset in this checkout: {FALLBACK_PRESET!r} instead"


def loop_step_s(log: list[dict[str, Any]], train_s: float | None, steps: int | None) -> float | None:
    """Seconds per step of the training loop, from the train log's elapsed times (see module doc)."""
    timed = [e for e in log if isinstance(e.get("elapsed_s"), (int, float)) and isinstance(e.get("step"), int)]
    if len(timed) >= 2 and timed[-1]["step"] > timed[0]["step"]:
        return (timed[-1]["elapsed_s"] - timed[0]["elapsed_s"]) / (timed[-1]["step"] - timed[0]["step"])
    return train_s / steps if train_s and steps else None


def short_run_row(method: str, preset: str, steps: int, out: Path, device: torch.device, dataset: str = "photos",
                  codebook_size: int = CODEBOOK_SIZE, share: bool = True) -> dict[str, Any]:
    from bench.runs.config import RunConfig, resolve
    from bench.runs.runner import run_one
    from bench.training.train_log import read_train_log

    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(method=method, preset=preset, steps=steps, note="")
    cfg = RunConfig(method=method, dataset=dataset, codebook_size=codebook_size, preset=preset, steps=steps,
                    device=str(device))
    try:
        run = resolve(cfg)
    except UserError as exc:
        return dict(row, status="not run", note=str(exc))
    row.update(batch=run.train.batch_size, resolution=run.model.resolution)
    records: list[dict[str, Any]] = []
    row["peak_mb"] = peak_mb(lambda: records.append(run_one(cfg, out=out, force=True, progress=False)), device)
    record = records[0]
    row.update(status=record["status"], train_s=record.get("train_s"))
    if record["status"] != "finished":
        return dict(row, note=(record.get("error") or "")[:300])
    if record.get("wall_s") is not None and record.get("train_s") is not None:
        row["eval_s"] = record["wall_s"] - record["train_s"]
    metrics = record.get("metrics") or {}
    row.update(fid=metrics.get("fid"), psnr=metrics.get("psnr"), utilization=metrics.get("utilization"))
    per_step = loop_step_s(read_train_log(run_folder.run_dir(out, run.run_id)), record.get("train_s"),
                           record.get("steps_done"))
    if per_step:
        row.update(loop_step_ms=per_step * 1e3, loop_images_per_s=run.train.batch_size / per_step)
    if share:
        (step,) = train_step_rows([preset], [method], device, reps=2)
        row.update(step_ms=step["step_ms"], quantizer_ms=step["quantizer_ms"],
                   quantizer_share=step["quantizer_share"])
    return row


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.speed.short_run", description=__doc__.splitlines()[0])
    p.add_argument("--methods", default=",".join(TRAIN_STEP_METHODS), help="comma-separated (default: %(default)s)")
    p.add_argument("--preset", default=None,
                   help=f"default: {PREFERRED_PRESET!r} where it exists, else {FALLBACK_PRESET!r}")
    p.add_argument("--steps", type=int, default=300, help="training steps per run (default: %(default)s)")
    p.add_argument("--dataset", default="photos")
    p.add_argument("--codebook-size", type=int, default=CODEBOOK_SIZE)
    p.add_argument("--out", type=Path, default=Path("results/short_run"), help="results folder of the runs")
    p.add_argument("--csv", type=Path, default=None, help="where to write the rows (default: OUT/short_run.csv)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--no-share", action="store_true", help="skip the isolated step and the quantizer's share")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    preset, why = (args.preset, "") if args.preset else default_preset()
    if why:
        print(f"note: {why}")
    print(f"short runs: preset {preset}, {args.steps} steps, K={args.codebook_size}, {args.dataset}, on {device}")
    rows = [short_run_row(m, preset, args.steps, args.out, device, args.dataset, args.codebook_size,
                          share=not args.no_share) for m in args.methods.split(",")]
    print(fmt(rows))
    path = args.csv or args.out / "short_run.csv"
    write_csv(path, rows, COLUMNS)
    print(f"wrote {path}")
    return 0 if all(r["status"] == "finished" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
