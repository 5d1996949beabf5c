"""Evaluates a trained autoencoder on a held-out split: reconstructions go through the uint8 boundary
once, then every metric reads uint8 images. Code usage is accumulated over the whole split."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .autoencoder import VQAutoencoder
from .metrics import image_quality, keys
from .metrics.usage import CodeUsage
from .trainer import to_float, to_uint8

GRID_NAME = "reconstructions.png"
COUNTS_NAME = "code_counts.npy"
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


def image_metrics(originals: Tensor, recons: Tensor, batch_size: int = 256) -> dict[str, float]:
    """Mean per-image PSNR and SSIM of two uint8 sets; batching does not change the result."""
    psnr, ssim = [], []
    for i in range(0, len(originals), batch_size):
        a, b = originals[i : i + batch_size], recons[i : i + batch_size]
        psnr.append(image_quality.psnr(a, b))
        ssim.append(image_quality.ssim(a, b))
    return {keys.PSNR: float(torch.cat(psnr).mean()), keys.SSIM: float(torch.cat(ssim).mean())}


def save_grid(originals: Tensor, recons: Tensor, path: Path, n: int = GRID_IMAGES) -> None:
    """Two rows: originals above, reconstructions below."""
    n = min(n, len(originals))
    top = torch.cat(list(originals[:n]), dim=2)
    bottom = torch.cat(list(recons[:n]), dim=2)
    grid = torch.cat([top, bottom], dim=1).permute(1, 2, 0).numpy()
    tmp = path.with_name(path.name + ".tmp.png")
    Image.fromarray(np.ascontiguousarray(grid)).save(tmp)
    tmp.replace(path)


def evaluate(model: VQAutoencoder, dataset: Dataset, run_dir: Path, device: torch.device,
             batch_size: int = 64, num_workers: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics, protocol) for the record; writes the reconstruction grid and code histogram."""
    t0 = time.perf_counter()
    originals, recons, usage = reconstruct(model, dataset, batch_size, device, num_workers)
    metrics: dict[str, Any] = {key: None for key in keys.RECORD_METRICS}
    metrics.update(image_metrics(originals, recons))
    metrics.update(usage.stats())
    save_grid(originals, recons, run_dir / GRID_NAME)
    np.save(run_dir / COUNTS_NAME, usage.counts.numpy())
    protocol = {
        **getattr(dataset, "protocol", {}),
        "n_images": len(originals),
        "uint8_boundary": "clamp [-1,1] -> round((x+1)*127.5) -> uint8, once, before every metric",
        "psnr": "per image over RGB uint8, data range 255, mean over images",
        "ssim": "Gaussian window 11 (sigma 1.5), per channel then mean, mean over images",
        "usage": "bincount of indices over the whole split",
        "fid": None,
        "lpips": None,
        "eval_s": time.perf_counter() - t0,
    }
    return metrics, protocol
