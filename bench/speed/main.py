"""Speed benchmark: `python -m bench.speed [--quick] [--csv PATH]` (also `make speed`).

Prints one table and writes it as CSV: per method, quantizer forward+backward time and peak memory at
(B, H, W, D, K) shapes; the lower bound for the same shapes (the distance matrix multiplication
alone); the peer implementation from vector-quantize-pytorch where it implements the same method,
measured in the same process on the same inputs; a full training step per preset with the
quantizer's share; and evaluation throughput per metric. Median of several repetitions after
warm-up; CUDA timings synchronize.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import methods
from bench.core.errors import UserError
from bench.runs.presets import PRESETS
from bench.speed.evaluation import eval_rows
from bench.speed.output import fmt, write_csv
from bench.speed.peers import TRAIN_STEP_METHODS
from bench.speed.quantizers import COLUMNS, quantizer_rows
from bench.speed.shapes import FULL_SHAPES, QUICK_SHAPES, STRESS_SHAPE
from bench.speed.training import CODEBOOK_SIZE, train_step_rows

# The training-step presets, fastest first; `--quick` takes the first. A preset missing from this
# checkout (an older one without `gpu`) is left out with a note.
STEP_PRESETS = ("cpu-tiny", "gpu", "paper")
# On the CPU, presets at 128 px and above are timed at this batch: a full batch of 16 at 256 px
# takes minutes per step there.
CPU_BATCH, CPU_BATCH_FROM_RESOLUTION = 2, 128


def default_methods() -> list[str]:
    """Every registered method but the ablation variants (they cost what their base method costs)."""
    return [n for n in methods.available() if not methods.entry(n).defaults]


def step_presets(quick: bool) -> tuple[list[str], list[str]]:
    """(presets to time, the names missing from this checkout's PRESETS)."""
    wanted = list(STEP_PRESETS[:1] if quick else STEP_PRESETS)
    return [p for p in wanted if p in PRESETS], [p for p in wanted if p not in PRESETS]


def cpu_batches(presets: list[str]) -> dict[str, int]:
    return {p: CPU_BATCH for p in presets if PRESETS[p].model.resolution >= CPU_BATCH_FROM_RESOLUTION}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.speed", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a subset that runs in under a minute on 2 CPU cores")
    p.add_argument("--methods", default=None,
                   help="comma-separated methods (default: every registered one but the ablation variants)")
    p.add_argument("--csv", type=Path, default=Path("results/speed.csv"), help="where to write the quantizer rows")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--no-stress", action="store_true", help="skip the 65,536 x 65,536 search shape")
    p.add_argument("--no-train-step", action="store_true", help="skip the full training-step timing")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        names = [methods.entry(n).name for n in args.methods.split(",")] if args.methods else default_methods()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    reps = 3 if args.quick else 5
    shapes = list(QUICK_SHAPES if args.quick else FULL_SHAPES)
    stress = None if args.quick or args.no_stress else STRESS_SHAPE
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    print(f"device: {device} ({where}), torch {torch.__version__}")
    rows = quantizer_rows(names, shapes, device, reps, stress=stress)
    print(f"\nquantizer forward+backward (ms, median of {reps}); lower bound = distance matmul alone")
    print(fmt(rows))
    write_csv(args.csv, rows, COLUMNS)
    if not args.no_train_step:
        presets, missing = step_presets(args.quick)
        batch = cpu_batches(presets) if device.type == "cpu" else {}
        step_methods = [m for m in TRAIN_STEP_METHODS if m in names] or names[:1]
        notes = [f"K={CODEBOOK_SIZE}"]
        if batch:
            notes.append(f"{' and '.join(batch)} preset{'s' if len(batch) > 1 else ''} at batch {CPU_BATCH} on the CPU")
        if missing:
            notes.append(f"no {' or '.join(missing)} preset in this checkout")
        print(f"\nfull training step ({'; '.join(notes)})")
        print(fmt(train_step_rows(presets, step_methods, device, reps=3 if args.quick else 2, batch=batch)))
    print("\nevaluation throughput")
    print(fmt(eval_rows(device, n=16 if args.quick else 64, resolution=32, reps=reps)))
    print(f"\nwrote {args.csv}")
    return 0
