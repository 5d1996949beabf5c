"""`search`: the nearest-code search every codebook method shares (methods.base.nearest_codes) against
its bound, the distance matrix multiplication alone (bench.speed.quantizers), for codebooks up to
K = 262,144 at the `gpu` preset's latent (16 images of 16x16 codes of 256 channels).
"""
from __future__ import annotations

from typing import Any

from bench.speed.gpu.section import NOTE, Context
from bench.speed.quantizers import matmul_lower_bound_ms, search_row
from bench.speed.shapes import QUICK_SHAPES, Shape

FULL_SHAPES = [Shape(16, 16, 16, 256, k) for k in (1024, 4096, 16384, 65536, 262144)]
COLUMNS = ["K", "N", "D", "search ms", "bound ms", "search / bound", "bound TFLOP/s", "peak MiB", NOTE]


def measure(ctx: Context, shape: Shape, reps: int) -> dict[str, Any]:
    bound = matmul_lower_bound_ms(shape, ctx.device, reps)
    row = search_row(shape, ctx.device, reps, bound)
    return {"search ms": row["ms"], "bound ms": bound, "search / bound": row["ratio_to_bound"],
            "bound TFLOP/s": 2 * shape.n * shape.D * shape.K / (bound * 1e-3) / 1e12, "peak MiB": row["peak_mb"]}


def run(ctx: Context) -> None:
    shapes, reps = (QUICK_SHAPES, 2) if ctx.quick else (FULL_SHAPES, 5)
    section = ctx.section(
        "search: nearest-code search vs its matmul bound",
        f"methods.base.nearest_codes on N random fp32 latent vectors against K random codes of D channels, and "
        f"its bound: the (N, D) x (D, K) fp32 product alone into a reused buffer, the fastest of several row "
        f"blocks; median of {reps} after warm-up, CUDA synchronised. Peak MiB: the search's memory above what "
        f"was allocated before it.", COLUMNS)
    for shape in shapes:
        section.attempt({"K": shape.K, "N": shape.n, "D": shape.D}, lambda shape=shape: measure(ctx, shape, reps))
