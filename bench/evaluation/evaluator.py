"""Evaluates a trained autoencoder on a held-out split: reconstructions go through the uint8 boundary
once, then every metric reads uint8 images. Code usage is accumulated over the whole split.

`image_metrics` is the one place that computes the image metrics of two uint8 sets (PSNR, SSIM,
LPIPS or ST-LPIPS, rFID and KID); the evaluator and `python -m bench.metrics` both call it."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from bench.core import run_folder
from bench.core.atomic import atomic_path
from bench.core.images import to_float, to_uint8
from bench.evaluation.metrics import fid as fid_metric
from bench.evaluation.metrics import image_quality, keys
from bench.evaluation.metrics import lpips as lpips_metric
from bench.evaluation.metrics.usage import CodeUsage
from bench.models.autoencoder import VQAutoencoder

GRID_IMAGES = 16


@torch.no_grad()
def reconstruct(model: VQAutoencoder, dataset: Dataset, batch_size: int, device: torch.device,
                num_workers: int = 0) -> tuple[Tensor, Tensor, CodeUsage]:
    """(originals uint8, reconstructions uint8, code usage) over the whole dataset, in order."""
    model.eval()
    q = model.quantizer
    usage = CodeUsage(q.codebook_size, q.code_groups)
    originals, recons = [], []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    for batch in loader:
        x = to_float(batch.to(device))
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            xrec, out = model(x)
        usage.update(out.indices)
        originals.append(batch.cpu())
        recons.append(to_uint8(xrec).cpu())
    return torch.cat(originals), torch.cat(recons), usage


def pixel_metrics(originals: Tensor, recons: Tensor, batch_size: int = 256) -> dict[str, float]:
    """Mean per-image PSNR and SSIM of two uint8 sets; batching does not change the result."""
    psnr, ssim = [], []
    for i in range(0, len(originals), batch_size):
        a, b = originals[i : i + batch_size], recons[i : i + batch_size]
        psnr.append(image_quality.psnr(a, b))
        ssim.append(image_quality.ssim(a, b))
    return {keys.PSNR: float(torch.cat(psnr).mean()), keys.SSIM: float(torch.cat(ssim).mean())}


def image_metrics(originals: Tensor, recons: Tensor, reference: dict[str, Any] | None = None,
                  batch_size: int = 64, device: torch.device | str = "cpu", perceptual: bool = True,
                  use_cache: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics, protocol entries) of reconstructions against their originals, both uint8 (N, 3, H, W).

    `reference` is the dataset's protocol (dataset, split, resolution): with it, the originals' FID
    statistics come from the on-disk cache. `perceptual=False` leaves LPIPS, rFID and KID None (and
    says so in the protocol); they cost about 0.2 s per image on 2 CPU cores."""
    for t in (originals, recons):
        if t.dtype != torch.uint8:
            raise TypeError("image metrics take uint8 images: convert once at the evaluator's boundary")
    metrics: dict[str, Any] = {keys.LPIPS: None, keys.ST_LPIPS: None, keys.FID: None, keys.KID: None,
                               keys.KID_STD: None}
    metrics.update(pixel_metrics(originals, recons))
    protocol: dict[str, Any] = {}
    if not perceptual:
        reason = "switched off for this evaluation (perceptual=False)"
        return metrics, {"fid": {"n_images": 0, "skipped": reason}, "lpips": {"name": None, "skipped": reason}}
    t0 = time.perf_counter()
    lp, protocol["lpips"] = lpips_metric.compute(originals, recons, batch_size, device)
    protocol["lpips"]["seconds"] = time.perf_counter() - t0
    metrics.update(lp)
    t0 = time.perf_counter()
    fm, protocol["fid"] = fid_metric.compute(originals, recons, reference, batch_size, device, use_cache=use_cache)
    protocol["fid"]["seconds"] = time.perf_counter() - t0
    metrics.update(fm)
    return metrics, protocol


def save_grid(originals: Tensor, recons: Tensor, path: Path, n: int = GRID_IMAGES) -> None:
    """Two rows: originals above, reconstructions below."""
    n = min(n, len(originals))
    top = torch.cat(list(originals[:n]), dim=2)
    bottom = torch.cat(list(recons[:n]), dim=2)
    grid = torch.cat([top, bottom], dim=1).permute(1, 2, 0).numpy()
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(np.ascontiguousarray(grid)).save(tmp, format="PNG")


def evaluate(model: VQAutoencoder, dataset: Dataset, run_dir: Path, device: torch.device,
             batch_size: int = 64, num_workers: int = 0, perceptual: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics, protocol) for the record; writes the reconstruction grid and code histogram.
    `perceptual=False` skips LPIPS/rFID/KID (None in the record, the reason in the protocol)."""
    t0 = time.perf_counter()
    originals, recons, usage = reconstruct(model, dataset, batch_size, device, num_workers)
    metrics: dict[str, Any] = {key: None for key in keys.RECORD_METRICS}
    image, entries = image_metrics(originals, recons, getattr(dataset, "protocol", None), batch_size, device,
                                   perceptual=perceptual)
    metrics.update(image)
    metrics.update(usage.stats())
    save_grid(originals, recons, run_dir / run_folder.GRID)
    with atomic_path(run_dir / run_folder.CODE_COUNTS, suffix=".npy") as tmp:
        np.save(tmp, usage.counts.numpy())
    protocol = {
        **getattr(dataset, "protocol", {}),
        "n_images": len(originals),
        "uint8_boundary": "clamp [-1,1] -> round((x+1)*127.5) -> uint8, once, before every metric",
        "psnr": "per image over RGB uint8, data range 255, mean over images",
        "ssim": "Gaussian window 11 (sigma 1.5), per channel then mean, mean over images",
        "usage": "bincount of indices over the whole split",
        "fid": entries["fid"],
        "lpips": entries["lpips"],
        "eval_s": time.perf_counter() - t0,
    }
    return metrics, protocol
