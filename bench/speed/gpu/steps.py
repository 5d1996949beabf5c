"""`steps`: one full training step (bench.speed.training.step_setup: encoder, quantizer, decoder, losses,
the GAN where the preset turns it on, backward, both optimizers) of the `gpu` and `paper` presets for
vqgan, vqct, fsq and simvq, each in three variants of TrainStep: its own choice (bf16 autocast and
channels-last on a GPU), the other memory format, and the other precision; then one preset and method
with --compile. Per row: ms/step, images/s, the FLOPs of one step (torch.utils.flop_counter, counted
once per preset and method), the TFLOP/s achieved, their share of the measured bf16 peak (MFU), the
peak memory and the first step's time (cuDNN autotuning, compilation).
"""
from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from bench.evaluation import precision
from bench.runs.presets import PRESETS
from bench.speed.gpu import peak as peak_section
from bench.speed.gpu.section import NOTE, Context, Section, one_line, release_memory
from bench.speed.gpu.stand_ins import training_perceptual
from bench.speed.main import cpu_batches
from bench.speed.memory import peak_mb
from bench.speed.timing import interleaved_median_ms, median_ms, sync
from bench.speed.training import CODEBOOK_SIZE, StepSetup, step_setup

FULL_PRESETS, QUICK_PRESETS = ("gpu", "paper"), ("smoke",)
QUICK_BATCH = 2  # the rehearsal checks the plumbing: a smoke step of 2 images takes a fraction of a second
METHODS = ("vqgan", "vqct", "fsq", "simvq")
# The rehearsal proves the plumbing and the bundle (vqct: the carried prior) within its 5 minutes;
# fsq and simvq add no code path the CPU could check that vqgan does not.
QUICK_METHODS = ("vqgan", "vqct")
COMPILED = "vqgan"  # --compile on one method of the first preset: compiling takes a minute or more
COLUMNS = ["preset", "method", "variant", "batch", "ms/step", "images/s", "GFLOP/step", "TFLOP/s", "MFU",
           "peak MiB", "first step s", "perceptual", NOTE]


@dataclass(frozen=True)
class Variant:
    bf16: bool
    channels_last: bool
    compile: bool = False
    default: bool = False

    @property
    def label(self) -> str:
        text = f"{'bf16' if self.bf16 else 'fp32'}, {'channels-last' if self.channels_last else 'contiguous'}"
        return text + (", compiled" if self.compile else "") + (" (default)" if self.default else "")

    def options(self) -> dict[str, bool]:
        return {"bf16": self.bf16, "channels_last": self.channels_last, "compile": self.compile}


def variants(device: torch.device) -> list[Variant]:
    """TrainStep's own choice on this device first, then the other memory format, then the other precision."""
    gpu = device.type == "cuda"
    return [Variant(gpu, gpu, default=True), Variant(gpu, not gpu), Variant(not gpu, gpu)]


def achieved_tflops(flops: float, ms: float) -> float:
    return flops / (ms * 1e-3) / 1e12


def mfu(flops: float, ms: float, peak_tflops: float) -> float:
    """Model FLOPs utilisation: the step's FLOPs per second over the measured peak rate."""
    return achieved_tflops(flops, ms) / peak_tflops


def count_flops(step: Callable[[], None]) -> int:
    """FLOPs of one call (matmuls, convolutions, attention; forward and backward; 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return int(counter.get_total_flops())


@dataclass
class Prepared:
    """A built step of one variant, run twice: its first call's seconds and the peak memory."""

    variant: Variant
    step: StepSetup
    first_s: float
    peak_mib: float
    perceptual: str


def prepare(ctx: Context, preset: str, method: str, variant: Variant, batch: int | None) -> Prepared:
    """Build the step and run it twice. Peak memory on CUDA: the allocator's high-water mark over both
    calls above what was allocated before this step was built (its weights, optimizer state and
    activations, and none of the other variants' still alive); on the CPU: the resident set's rise
    during the second call (bench.speed.memory)."""
    gc.collect()
    base = torch.cuda.memory_allocated(ctx.device) if ctx.cuda else 0
    if ctx.cuda:
        torch.cuda.reset_peak_memory_stats(ctx.device)
    step = step_setup(preset, method, ctx.device, batch, **variant.options())
    perceptual = training_perceptual(step.learner, ctx.device)
    sync(ctx.device)
    t0 = time.perf_counter()
    step()
    sync(ctx.device)
    first_s = time.perf_counter() - t0
    if ctx.cuda:
        step()
        sync(ctx.device)
        peak = (torch.cuda.max_memory_allocated(ctx.device) - base) / 2**20
    else:
        peak = peak_mb(step, ctx.device)
    return Prepared(variant, step, first_s, peak, perceptual)


def timed_row(p: Prepared, ms: float, flops: int | None, peak_tflops: float | None) -> dict[str, Any]:
    """A timed variant's values; `peak_tflops`: the matmul peak of its precision (peak.reference)."""
    batch = p.step.run.train.batch_size
    row: dict[str, Any] = {"batch": batch, "ms/step": ms, "images/s": batch / ms * 1e3, "peak MiB": p.peak_mib,
                           "first step s": p.first_s, "perceptual": p.perceptual}
    if flops:
        row.update({"GFLOP/step": flops / 1e9, "TFLOP/s": achieved_tflops(flops, ms)})
        if peak_tflops:
            row["MFU"] = mfu(flops, ms, peak_tflops)
    return row


def group(ctx: Context, section: Section, preset: str, method: str, batch: int | None, reps: int,
          peaks: dict[str, float]) -> int | None:
    """The variants of one preset and method, timed round-robin (a slow spell hits them alike), one row
    each; returns the FLOPs of one step (None where they could not be counted)."""
    built: list[Prepared] = []
    for variant in variants(ctx.device):
        keys = {"preset": preset, "method": method, "variant": variant.label}
        try:
            built.append(prepare(ctx, preset, method, variant, batch))
        except Exception as exc:  # noqa: BLE001 - one failing variant costs its row only
            release_memory()
            section.row({**keys, NOTE: f"error: {one_line(exc)}"})
    if not built:
        return None
    flops, note = None, ""
    try:
        flops = count_flops(built[0].step)
    except Exception as exc:  # noqa: BLE001
        note = f"FLOPs not counted: {one_line(exc)}"
    try:
        times = interleaved_median_ms({p.variant.label: p.step for p in built}, ctx.device, reps=reps, warmup=1)
    except Exception:  # noqa: BLE001 - one variant failing mid-way: time the others alone, each its own row
        release_memory()
        times = {}
    for p in built:
        keys = {"preset": preset, "method": method, "variant": p.variant.label}
        peak_tflops = peaks.get(peak_section.reference(ctx, p.variant.bf16))
        if p.variant.label in times:
            section.row({**keys, **timed_row(p, times[p.variant.label], flops, peak_tflops), NOTE: note})
        else:
            section.attempt(keys, lambda p=p, peak=peak_tflops: {
                **timed_row(p, median_ms(p.step, ctx.device, 1, reps), flops, peak), NOTE: "timed alone"})
    del built
    release_memory()
    return flops


def compiled_row(ctx: Context, section: Section, preset: str, reps: int, flops: int | None,
                 peaks: dict[str, float]) -> None:
    default = variants(ctx.device)[0]
    variant = Variant(default.bf16, default.channels_last, compile=True)
    keys = {"preset": preset, "method": COMPILED, "variant": variant.label}
    if not ctx.cuda or ctx.quick:
        section.row({**keys, NOTE: "not run: --compile is timed on the GPU only, outside quick mode (compiling "
                                   "takes a minute or more)"})
        return

    def measure() -> dict[str, Any]:
        p = prepare(ctx, preset, COMPILED, variant, None)
        row = timed_row(p, median_ms(p.step, ctx.device, 1, reps), flops,
                        peaks.get(peak_section.reference(ctx, variant.bf16)))
        return {**row, NOTE: "FLOPs counted on the eager step; first step s includes compilation"}

    section.attempt(keys, measure)
    release_memory()


def run(ctx: Context) -> None:
    presets = [p for p in (QUICK_PRESETS if ctx.quick else FULL_PRESETS) if p in PRESETS]
    if ctx.quick:
        batches = dict.fromkeys(presets, QUICK_BATCH)
    else:
        batches = cpu_batches(presets) if not ctx.cuda else {}
    reps = 1 if ctx.quick else 3
    peaks, where = peak_section.read_peaks(ctx.summary), f"{peak_section.PEAK_FILE} (the peak section)"
    if not peaks:
        peaks, where = peak_section.measure_all(ctx), "matmuls measured here (no peak.json)"
    tf32 = (f" fp32 rows: no autocast, TF32 convolutions {precision.tf32_enabled('conv')}, TF32 matmul "
            f"{precision.tf32_enabled('matmul')}." if ctx.cuda else "")
    smaller = "".join(f" {p} at batch {b}." for p, b in batches.items())
    section = ctx.section(
        "steps: training step",
        f"One full training step (K={CODEBOOK_SIZE}, the GAN on where the preset ever starts it, random input), "
        f"median of {reps} round-robin rounds of the variants after warm-up. GFLOP/step by FlopCounterMode on "
        f"the first variant; MFU = TFLOP/s over the matmul peak of the row's precision from {where} (bf16; fp32 "
        f"rows: fp32 with TF32 as cuDNN's convolutions have it). Peak MiB: on CUDA the allocator's "
        f"high-water mark of the step (its weights, optimizer state, activations); on the CPU the resident "
        f"set's rise during a step. Perceptual networks named 'random weights' have no weight file here "
        f"(same arithmetic).{tf32}{smaller}", COLUMNS)
    flops_of: dict[tuple[str, str], int | None] = {}
    for preset in presets:
        for method in (METHODS if not ctx.quick else [m for m in METHODS if m in QUICK_METHODS]):
            flops_of[preset, method] = group(ctx, section, preset, method, batches.get(preset), reps, peaks)
    if presets:
        compiled_row(ctx, section, presets[0], reps, flops_of.get((presets[0], COMPILED)), peaks)
