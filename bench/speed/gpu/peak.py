"""`peak`: the matrix-multiplication rates this machine reaches now, the denominators of the MFUs in
`steps`: bf16 (the precision the training step runs in on a GPU) at 8192^3, and fp32 with and without
TF32; each rate goes into `peak.json` beside the summary as soon as it is measured.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.core.atomic import write_json_atomic
from bench.evaluation import precision
from bench.speed.gpu.section import NOTE, Context, one_line, release_memory
from bench.speed.timing import median_ms

PEAK_FILE = "peak.json"
BF16, FP32, TF32_ON, TF32_OFF = "bf16", "fp32", "fp32, TF32 on", "fp32, TF32 off"
FULL_N, QUICK_N = 8192, 256
# Products per timed call: one 8192^3 bf16 product takes about 1.4 ms on an H100, short next to the
# launch and clock-read overheads of a single call.
REPEAT = 10
COLUMNS = ["precision", "n", "ms/product", "TFLOP/s", NOTE]


@dataclass(frozen=True)
class Variant:
    label: str
    dtype: torch.dtype
    tf32: bool | None  # cuBLAS float32 matmuls in TF32 while timed; None: left as they are


def variants(ctx: Context) -> list[Variant]:
    if ctx.cuda:
        return [Variant(BF16, torch.bfloat16, None), Variant(TF32_ON, torch.float32, True),
                Variant(TF32_OFF, torch.float32, False)]
    return [Variant(BF16, torch.bfloat16, None), Variant(FP32, torch.float32, None)]


def reference(ctx: Context, bf16: bool) -> str:
    """The rate a training step's MFU is taken against: the peak of the precision it runs in. An fp32
    step on CUDA is mostly convolutions, which run in TF32 where cuDNN's TF32 switch is on (torch's
    default); its matmuls follow cuBLAS's TF32 flag (off by default)."""
    if bf16:
        return BF16
    if ctx.cuda:
        return TF32_ON if precision.tf32_enabled("conv") else TF32_OFF
    return FP32


def peak_path(summary: Path) -> Path:
    return summary.parent / PEAK_FILE


def matmul_rate(n: int, variant: Variant, device: torch.device, reps: int) -> tuple[float, float]:
    """(ms per n x n x n product, TFLOP/s: 2 n^3 per product), median of `reps` calls of REPEAT products."""
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=g).to(device, variant.dtype) for _ in range(2))
    out = torch.empty(n, n, device=device, dtype=variant.dtype)

    def products() -> None:
        for _ in range(REPEAT):
            torch.mm(a, b, out=out)

    with precision.matmul_tf32(variant.tf32):
        ms = median_ms(products, device, warmup=2, reps=reps) / REPEAT
    return ms, 2 * n**3 / (ms * 1e-3) / 1e12


def read_peaks(summary: Path) -> dict[str, float]:
    """{precision: TFLOP/s} of `peak.json` beside the summary; empty when it is absent or unreadable."""
    try:
        rates = json.loads(peak_path(summary).read_text())["tflops"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    if not isinstance(rates, dict):
        return {}
    return {k: float(v) for k, v in rates.items() if isinstance(v, (int, float)) and v > 0}


def measure(ctx: Context, variant: Variant, n: int, reps: int, found: dict[str, Any]) -> dict[str, Any]:
    """One precision's row; its rate joins `found` and peak.json at once (a later kill keeps it)."""
    ms, tflops = matmul_rate(n, variant, ctx.device, reps)
    found.setdefault("tflops", {})[variant.label] = tflops
    write_json_atomic(peak_path(ctx.summary), found)
    return {"ms/product": ms, "TFLOP/s": tflops}


def measure_all(ctx: Context) -> dict[str, float]:
    """Every precision's rate, written to peak.json, without a table: for `steps` when the `peak`
    section did not run. A precision that fails is left out."""
    n = QUICK_N if ctx.quick else FULL_N
    found: dict[str, Any] = {"device": ctx.where(), "n": n, "tflops": {}}
    for variant in variants(ctx):
        try:
            measure(ctx, variant, n, 3, found)
        except Exception as exc:  # noqa: BLE001 - the rows that need it go without their MFU
            release_memory()
            print(f"(matmul peak in {variant.label} not measured: {one_line(exc)})", file=sys.stderr)
    return found["tflops"]


def run(ctx: Context) -> None:
    n = QUICK_N if ctx.quick else FULL_N
    reps = 3 if ctx.quick else 5
    section = ctx.section(
        "peak: matmul rate", f"torch.mm of two random {n}x{n} matrices, {REPEAT} products per timed call, median of "
        f"{reps} calls after warm-up, CUDA synchronised; TFLOP/s = 2 n^3 / time. The denominators of the MFUs "
        f"in `steps` (written to {PEAK_FILE}).", COLUMNS)
    found: dict[str, Any] = {"device": ctx.where(), "n": n, "tflops": {}}
    for variant in variants(ctx):
        section.attempt({"precision": variant.label, "n": n},
                        lambda variant=variant: measure(ctx, variant, n, reps, found))
