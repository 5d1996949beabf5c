"""`python -m bench.speed.loader [--quick]`: can the input pipeline keep a training step fed?

Per preset, the training data loader built as the trainer builds it (bench/training/loop.py:
StepBatchSampler over the train split, DataLoader with `num_workers`, pinned memory where CUDA is
the device, no persistent workers) is read for each data source and worker count, and its images/s
is set against the images/s of the preset's training step (vqgan, the GAN on where the preset ever
turns it on) on a fixed batch of real images, on the same device:

- `photos`: the embedded dataset, held in memory;
- `image files`: an image folder (`imagefolder:PATH`) of files written to a temporary folder, larger
  than the preset's resolution as a real dataset is (default JPEGs of 500x375, ImageNet's most
  common size; `--size 1024x1024 --format png` for FFHQ-like files; cut from the photographs behind
  `photos`), decoded, resized and cropped for every item;
- `image files, decoded cache`: the same folder through `--dataset-cache` (the resized images in a
  memory-mapped file, built once before timing; its build time is printed).

`loader / step` above 1 means the loader alone outruns the step. On the CPU the loader's workers and
the step share the same cores, so the `loop` columns also run the trainer's loop body itself (load,
move, step; the cpu-tiny and smoke presets on the CPU, every preset on a GPU) and give its images/s
against the step's alone (`loop / step`: the median over rounds of each loop against the step alone
timed just before it; 1 means loading costs the step nothing). Presets at 128 px and above have
their step timed on the CPU at batch 2 and scaled to images/s (the loader always reads the preset's
full batch). Every comparison is timed round-robin in this process (the step alone, every loader,
every loop, then again): compare rows, not runs.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from bench.core.errors import UserError
from bench.cli import parsing
from bench.speed.output import fmt

PHOTOS, FILES, CACHED = "photos", "image files", "image files, decoded cache"
FORMATS = {"jpeg": ".jpg", "png": ".png"}
SOURCES = (PHOTOS, FILES, CACHED)
CPU_STEP_BATCH, CPU_STEP_BATCH_FROM = 2, 128  # as bench.speed.main: a 128 px step of 16 takes minutes on 2 cores
LOOP_PRESETS = ("cpu-tiny", "smoke")  # presets whose trainer loop is timed on the CPU
METHOD = "vqgan"
OPEN_ENDED = 10**6  # sampler steps of a timed read, which stops itself


@dataclass(frozen=True)
class Settings:
    presets: tuple[str, ...]
    workers: tuple[int, ...]
    images: int  # image files written
    size: tuple[int, int]  # (width, height) of each file
    format: str  # a key of FORMATS
    batches: int  # batches read per loader measurement, after the first (at least)
    min_read_s: float  # and seconds (at least)
    reps: int
    loop_steps: int


FULL = Settings(presets=("cpu-tiny", "gpu"), workers=(0, 2, 4), images=512, size=(500, 375), format="jpeg",
                batches=8, min_read_s=1.0, reps=3, loop_steps=6)
QUICK = Settings(presets=("cpu-tiny",), workers=(0, 2), images=48, size=(96, 72), format="jpeg", batches=2,
                 min_read_s=0.0, reps=1, loop_steps=2)


def write_images(folder: Path, n: int, size: tuple[int, int], fmt: str = "jpeg", seed: int = 0) -> Path:
    """n image files of `size` under folder/train (and n/8 under folder/val: imagefolder wants both),
    each a random crop of one of the embedded photographs, resized: real image statistics, so real
    decode times. JPEG at quality 90, PNG at PIL's default compression. Returns `folder`."""
    from datasets.photos import _load_photos  # the photographs behind `photos`, shipped with the libraries

    photos = [np.asarray(p) for _, p in sorted(_load_photos().items())]
    rng = np.random.default_rng(seed)
    w, h = size
    for split, count in (("train", n), ("val", max(1, n // 8))):
        (folder / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            photo = photos[i % len(photos)]
            ph, pw = photo.shape[:2]
            cw, ch = min(pw, max(w, pw // 2)), min(ph, max(h, ph // 2))  # at least half the photograph
            top, left = rng.integers(0, ph - ch + 1), rng.integers(0, pw - cw + 1)
            crop = Image.fromarray(np.ascontiguousarray(photo[top : top + ch, left : left + cw, :3]))
            crop.resize((w, h), Image.Resampling.BICUBIC).save(folder / split / f"{i:05d}{FORMATS[fmt]}", quality=90)
    return folder


def train_split(source: str, preset: str, folder: Path) -> tuple[Any, Any]:
    """(resolved run, train split) for a source, through the runner's own path (RunConfig ->
    data_options -> datasets.create), so the cache and the folder options are the trainer's. The
    decoded cache is built beside the folder (it goes away with the files); nothing else moves."""
    import datasets
    from bench.runs.config import RunConfig, resolve

    name = PHOTOS if source == PHOTOS else f"imagefolder:{folder}"
    run = resolve(RunConfig(method=METHOD, dataset=name, preset=preset, codebook_size=256,
                            dataset_cache=source == CACHED))
    saved = os.environ.get("VQBENCH_CACHE")
    os.environ["VQBENCH_CACHE"] = str(folder.parent / "cache")
    try:
        return run, datasets.create(run.dataset, "train", run.model.resolution, run.config.data_root,
                                    **run.data_options())
    finally:
        if saved is None:
            del os.environ["VQBENCH_CACHE"]
        else:
            os.environ["VQBENCH_CACHE"] = saved


def make_loader(dataset: Any, run: Any, workers: int, steps: int, device: torch.device) -> Any:
    """The trainer's DataLoader (bench.training.loop.training_loader), from step 0, with `workers` workers."""
    from bench.training.loop import training_loader
    from bench.training.replicas import SINGLE

    return training_loader(dataset, run, device, 0, steps, workers, SINGLE)


def read_rate(dataset: Any, run: Any, workers: int, batches: int, min_s: float,
              device: torch.device) -> tuple[float, float]:
    """(images/s after the first batch, seconds to the first batch: worker start-up). Reads at least
    `batches` batches and `min_s` seconds, so that a fast source is not timed on a few milliseconds;
    the workers shut down after the clock stops."""
    t0 = time.perf_counter()
    it: Iterator[torch.Tensor] = iter(make_loader(dataset, run, workers, OPEN_ENDED, device))
    next(it).to(device, non_blocking=True)
    t1 = time.perf_counter()
    n = k = 0
    while k < batches or time.perf_counter() - t1 < min_s:
        batch = next(it).to(device, non_blocking=True)
        n, k = n + len(batch), k + 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    rate = n / (time.perf_counter() - t1)
    del it
    return rate, t1 - t0


class Stepper:
    """The preset's training step (bench.training.step.TrainStep, method vqgan, K=256, the GAN on
    where the preset ever turns it on), at the preset's batch, or at CPU_STEP_BATCH for a large
    preset on the CPU, on a fixed batch of real images."""

    def __init__(self, run: Any, dataset: Any, device: torch.device) -> None:
        from bench.core.images import to_float
        from bench.training.step import TrainStep

        self.full = run.train.batch_size
        self.batch = (CPU_STEP_BATCH if device.type == "cpu" and run.model.resolution >= CPU_STEP_BATCH_FROM
                      else self.full)
        r = run if self.batch == self.full else run.with_train(batch_size=self.batch, micro_batch=None)
        r = r.with_train(disc_start=0 if r.train.disc_start < r.train.steps else 10**9)
        torch.manual_seed(0)
        self.learner, self.device = TrainStep(r, device), device
        self.x = to_float(torch.stack([dataset[i % len(dataset)] for i in range(self.batch)]).to(device))
        self.learner(self.x, 0)  # warm-up: allocations, first-call setup

    def rate(self, steps: int) -> float:
        """images/s of `steps` steps on the fixed batch."""
        t0 = time.perf_counter()
        for _ in range(steps):
            self.learner(self.x, 0)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return steps * self.batch / (time.perf_counter() - t0)

    def loop_rate(self, dataset: Any, run: Any, workers: int, steps: int) -> float:
        """images/s of the trainer's loop body (load, move, step) after its first step (which pays the
        workers' start-up)."""
        from bench.core.images import to_float

        assert self.batch == self.full, "the loop runs at the preset's own batch"
        t1, n = None, 0
        for step, batch in enumerate(make_loader(dataset, run, workers, steps + 1, self.device)):
            self.learner(to_float(batch.to(self.device, non_blocking=True)), step)
            if t1 is None:
                t1 = time.perf_counter()
            else:
                n += len(batch)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return n / (time.perf_counter() - t1)


def preset_rows(preset: str, folder: Path, s: Settings, device: torch.device) -> list[dict[str, Any]]:
    splits = {src: train_split(src, preset, folder) for src in SOURCES}
    configs = [(src, w) for src in SOURCES for w in s.workers]
    stepper = Stepper(*splits[PHOTOS], device)
    loop = stepper.batch == stepper.full and (device.type == "cuda" or preset in LOOP_PRESETS)
    steps: list[float] = []
    reads: dict[tuple[str, int], list[tuple[float, float]]] = {c: [] for c in configs}
    loops: dict[tuple[str, int], list[tuple[float, float]]] = {c: [] for c in configs}
    for _ in range(s.reps):  # round-robin: every loader, then every loop, each right after the step alone
        steps.append(stepper.rate(s.loop_steps if loop else 1))
        for src, w in configs:
            run, ds = splits[src]
            reads[(src, w)].append(read_rate(ds, run, w, s.batches, s.min_read_s, device))
        for src, w in configs if loop else ():
            run, ds = splits[src]
            alone = stepper.rate(s.loop_steps)  # paired: a load that drifts during a round hits both
            steps.append(alone)
            loops[(src, w)].append((stepper.loop_rate(ds, run, w, s.loop_steps), alone))
    step_ips = statistics.median(steps)
    rows = []
    for src, w in configs:
        run, ds = splits[src]
        ips = statistics.median(r[0] for r in reads[(src, w)])
        pairs = loops[(src, w)]
        loop_ips = statistics.median(p[0] for p in pairs) if pairs else None
        loop_ratio = statistics.median(p[0] / p[1] for p in pairs) if pairs else None
        row = {"preset": preset, "source": src, "workers": w, "pin_memory": device.type == "cuda",
               "batch": run.train.batch_size, "resolution": run.model.resolution,
               "loader images/s": ips, "first batch s": statistics.median(r[1] for r in reads[(src, w)]),
               "step images/s": step_ips, "step batch": stepper.batch, "loader / step": ips / step_ips,
               "loop images/s": loop_ips, "loop / step": loop_ratio, "note": ""}
        if src == CACHED:
            row["note"] = f"cache built in {ds.meta['build_s']:.1f} s"
        rows.append(row)
    return rows


def parser() -> argparse.ArgumentParser:
    p = parsing.OneLineParser(prog="python -m bench.speed.loader", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="cpu-tiny only, small files, workers 0 and 2: checks that it runs")
    p.add_argument("--presets", default=None, help="comma-separated (default: cpu-tiny,gpu)")
    p.add_argument("--workers", type=parsing.comma_list(parsing.non_negative_int), default=None,
                   help="comma-separated DataLoader worker counts (default: 0,2,4)")
    p.add_argument("--images", type=parsing.positive_int, default=None, help="image files to write (default: 512)")
    p.add_argument("--size", default=None, help="WxH of each file (default: 500x375)")
    p.add_argument("--format", default=None, choices=sorted(FORMATS), help="file format (default: jpeg)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    return p


def settings(args: argparse.Namespace) -> Settings:
    from dataclasses import replace

    from bench.runs.presets import preset

    s = QUICK if args.quick else FULL
    if args.presets:
        s = replace(s, presets=tuple(preset(p).name for p in args.presets.split(",")))
    if args.workers:
        s = replace(s, workers=tuple(args.workers))
    if args.size:
        try:
            w, h = (int(v) for v in args.size.lower().split("x"))
        except ValueError:
            w = h = 0
        if w < 1 or h < 1:
            raise UserError(f"--size takes WIDTHxHEIGHT in pixels, e.g. 500x375; got {args.size!r}")
        s = replace(s, size=(w, h))
    if args.format:
        s = replace(s, format=args.format)
    if args.images is not None:
        s = replace(s, images=args.images)
    return s


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        s = settings(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    # More workers than cores is one of the settings measured here, not a mistake to warn about.
    warnings.filterwarnings("ignore", message="This DataLoader will create")
    with tempfile.TemporaryDirectory(prefix="vqbench-loader-") as tmp:
        folder = write_images(Path(tmp) / "images", s.images, s.size, s.format)
        print(f"input pipeline on {device} ({torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs): "
              f"{s.images} {s.format.upper()} files of {s.size[0]}x{s.size[1]}, at least {s.batches} batches and "
              f"{s.min_read_s:g} s per read, median of {s.reps}")
        rows = [r for p in s.presets for r in preset_rows(p, folder, s, device)]
    print(fmt(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
