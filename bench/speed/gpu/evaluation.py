"""`eval`: the evaluator's two networks in images/s at 256 px, called as an evaluation calls them on
uint8 images held on the CPU (copied to the device batch by batch, results back): FID's Inception-v3
features (bench.evaluation.metrics.fid, the fused network of fid_fused) and the LPIPS metric's AlexNet
(bench.evaluation.metrics.lpips); in fp32 with TF32 off, and on a GPU also under bf16 autocast.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

from bench.evaluation.precision import evaluation_precision
from bench.speed.gpu import stand_ins
from bench.speed.gpu.section import NOTE, Context, one_line, release_memory
from bench.speed.timing import median_ms

RESOLUTION = 256
FULL_IMAGES, FULL_BATCH = 512, 64  # 64: the batch of both metrics (fid.BATCH_SIZE, lpips.BATCH_SIZE)
QUICK_IMAGES, QUICK_BATCH = 2, 2
FP32, BF16 = "fp32, TF32 off", "bf16 autocast"
COLUMNS = ["network", "weights", "precision", "batch", "images", "ms", "images/s", NOTE]


@contextlib.contextmanager
def precision(device: torch.device, name: str) -> Iterator[None]:
    """fp32 with TF32 off (convolutions and matmuls), or bf16 autocast; TF32 settings restored after."""
    if name == FP32:  # the evaluator's own precision (bench/evaluation/precision.py)
        with evaluation_precision(device.type):
            yield
    else:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield


def images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two sets of random uint8 images, the second a noisy copy of the first (as reconstructions are)."""
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (n, 3, RESOLUTION, RESOLUTION), generator=g, dtype=torch.uint8)
    b = (a.int() + torch.randint(-20, 21, a.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    return a, b


INCEPTION, LPIPS = "Inception-v3 pool3 (rFID)", "LPIPS (alex)"


def builders(ctx: Context, a: torch.Tensor, b: torch.Tensor,
             batch: int) -> dict[str, Callable[[], tuple[str, Callable[[], Any]]]]:
    """{network: a builder of (its weights, one call over every image)}: built one at a time, so that a
    network that cannot be built costs its own rows only."""
    from bench.evaluation.metrics import fid, lpips

    def inception() -> tuple[str, Callable[[], Any]]:
        extractor = stand_ins.inception(ctx.device)
        return extractor.weights.source, lambda: fid.inception_features(a, batch_size=batch, extractor=extractor)

    def lpips_alex() -> tuple[str, Callable[[], Any]]:
        net = stand_ins.lpips_metric(ctx.device)
        return net.name, lambda: lpips.distances(a, b, batch_size=batch, net=net)

    return {INCEPTION: inception, LPIPS: lpips_alex}


def run(ctx: Context) -> None:
    n, batch, reps = (QUICK_IMAGES, QUICK_BATCH, 1) if ctx.quick else (FULL_IMAGES, FULL_BATCH, 3)
    precisions = [FP32, BF16] if ctx.cuda else [FP32]
    section = ctx.section(
        "eval: evaluation throughput",
        f"{n} random uint8 images of {RESOLUTION} px (Inception resizes them to 299), batches of {batch}, from "
        f"CPU memory as the evaluator passes them; median of {reps} after warm-up, CUDA synchronised. Weights "
        f"'random weights': no weight file on this machine (same arithmetic).", COLUMNS)
    a, b = images(n)
    for name, build in builders(ctx, a, b, batch).items():
        keys = {"network": name, "batch": batch, "images": n}
        try:
            weights, call = build()
        except Exception as exc:  # noqa: BLE001 - this network's rows only
            release_memory()
            section.row({**keys, NOTE: f"error: {one_line(exc)}"})
            continue
        for p in precisions:
            def measure(p: str = p, call: Callable[[], Any] = call) -> dict[str, Any]:
                def timed() -> Any:
                    with precision(ctx.device, p):
                        return call()

                ms = median_ms(timed, ctx.device, warmup=1, reps=reps)
                return {"ms": ms, "images/s": n / ms * 1e3}

            section.attempt({**keys, "weights": weights, "precision": p}, measure)
