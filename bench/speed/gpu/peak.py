"""`peak`: the matrix-multiplication rate this machine reaches now, the denominator of every MFU in
`steps`. bf16 (the precision the training step runs in on a GPU) at 8192^3, and fp32 with and without
TF32 for reference; each rate goes into `peak.json` beside the summary as soon as it is measured.
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.core.atomic import write_json_atomic
from bench.speed.gpu.section import NOTE, Context
from bench.speed.timing import median_ms

PEAK_FILE = "peak.json"
PEAK_KEY = "bf16"  # the rate MFU is taken against (the step's autocast precision on a GPU)
FULL_N, QUICK_N = 8192, 256
# Products per timed call: one 8192^3 bf16 product takes about 1.4 ms on an H100, short next to the
# launch and clock-read overheads of a single call.
REPEAT = 10
COLUMNS = ["precision", "n", "ms/product", "TFLOP/s", NOTE]


@dataclass(frozen=True)
class Variant:
    label: str
    dtype: torch.dtype
    tf32: bool | None  # torch.backends.cuda.matmul.allow_tf32 while timed; None: left as it is


def variants(ctx: Context) -> list[Variant]:
    if ctx.cuda:
        return [Variant(PEAK_KEY, torch.bfloat16, None), Variant("fp32, TF32 on", torch.float32, True),
                Variant("fp32, TF32 off", torch.float32, False)]
    return [Variant(PEAK_KEY, torch.bfloat16, None), Variant("fp32", torch.float32, None)]


def peak_path(summary: Path) -> Path:
    return summary.parent / PEAK_FILE


@contextlib.contextmanager
def tf32_matmul(on: bool | None) -> Iterator[None]:
    before = torch.backends.cuda.matmul.allow_tf32
    if on is not None:
        torch.backends.cuda.matmul.allow_tf32 = on
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def matmul_rate(n: int, variant: Variant, device: torch.device, reps: int) -> tuple[float, float]:
    """(ms per n x n x n product, TFLOP/s: 2 n^3 per product), median of `reps` calls of REPEAT products."""
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=g).to(device, variant.dtype) for _ in range(2))
    out = torch.empty(n, n, device=device, dtype=variant.dtype)

    def products() -> None:
        for _ in range(REPEAT):
            torch.mm(a, b, out=out)

    with tf32_matmul(variant.tf32):
        ms = median_ms(products, device, warmup=2, reps=reps) / REPEAT
    return ms, 2 * n**3 / (ms * 1e-3) / 1e12


def read_peak(summary: Path) -> float | None:
    """The bf16 TFLOP/s of `peak.json` beside the summary; None when it is absent or unreadable."""
    try:
        value = json.loads(peak_path(summary).read_text())["tflops"][PEAK_KEY]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def measure_peak(ctx: Context) -> float:
    """The bf16 rate alone, written to peak.json: for `steps` when the `peak` section did not run."""
    n = QUICK_N if ctx.quick else FULL_N
    _, tflops = matmul_rate(n, variants(ctx)[0], ctx.device, reps=3)
    write_json_atomic(peak_path(ctx.summary), {"device": ctx.where(), "n": n, "tflops": {PEAK_KEY: tflops}})
    return tflops


def run(ctx: Context) -> None:
    n = QUICK_N if ctx.quick else FULL_N
    reps = 3 if ctx.quick else 5
    section = ctx.section(
        "peak: matmul rate", f"torch.mm of two random {n}x{n} matrices, {REPEAT} products per timed call, median of "
        f"{reps} calls after warm-up, CUDA synchronised; TFLOP/s = 2 n^3 / time. The {PEAK_KEY} rate is the "
        f"denominator of every MFU (written to {PEAK_FILE}).", COLUMNS)
    found: dict[str, Any] = {"device": ctx.where(), "n": n, "tflops": {}}
    for variant in variants(ctx):
        def measure(variant: Variant = variant) -> dict[str, Any]:
            ms, tflops = matmul_rate(n, variant, ctx.device, reps)
            found["tflops"][variant.label] = tflops
            write_json_atomic(peak_path(ctx.summary), found)
            return {"ms/product": ms, "TFLOP/s": tflops}

        section.attempt({"precision": variant.label, "n": n}, measure)
