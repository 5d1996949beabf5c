"""Evaluation throughput rows: images per second of each metric on random uint8 image pairs."""
from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch

from bench.speed.timing import median_ms


def eval_rows(device: torch.device, n: int, resolution: int, reps: int) -> list[dict[str, Any]]:
    from bench.evaluation.metrics import image_quality

    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (n, 3, resolution, resolution), generator=g, dtype=torch.uint8)
    b = (a.int() + torch.randint(-20, 21, a.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    metrics: dict[str, Callable[[], Any]] = {"psnr": lambda: image_quality.psnr(a, b),
                                              "ssim": lambda: image_quality.ssim(a, b)}
    metrics.update(_optional_metrics(a, b, device))
    out = []
    for name, fn in metrics.items():
        ms = median_ms(fn, device, warmup=1, reps=reps)
        out.append({"metric": name, "images": n, "resolution": resolution, "ms": ms, "images_per_s": n / ms * 1e3})
    return out


def _optional_metrics(a: torch.Tensor, b: torch.Tensor, device: torch.device) -> dict[str, Callable[[], Any]]:
    """LPIPS and FID features, when their weights are available here."""
    found: dict[str, Callable[[], Any]] = {}
    try:
        from bench.evaluation.metrics import lpips as lp

        net = lp.get_network("alex", device)
        found[net.name] = lambda: lp.distances(a, b, net=net)
    except Exception as exc:  # noqa: BLE001 - report, do not fail the benchmark
        print(f"(LPIPS throughput not measured: {exc})", file=sys.stderr)
    try:
        from bench.evaluation.metrics import fid

        extractor = fid.get_extractor(device)
        found["fid features (per image)"] = lambda: fid.inception_features(a, extractor=extractor)
    except Exception as exc:  # noqa: BLE001
        print(f"(FID throughput not measured: {exc})", file=sys.stderr)
    return found
