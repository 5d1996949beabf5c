"""Evaluates a trained autoencoder on a held-out split, streaming: each batch is reconstructed, goes
through the uint8 boundary once, and updates every registered metric (bench.evaluation.stream); only
the first GRID_IMAGES images are kept, for the grid. Peak memory therefore does not grow with the
split beyond the per-image values and the Inception features.

The run folder gets the grid, the code histogram, every per-image value with the image names
(run_folder.PER_IMAGE) and the reconstructions' Inception features (run_folder.FEATURES).

Everything runs in float32 with TF32 off, whatever autocast the caller has on
(bench.evaluation.precision), and outside every collective (methods.distributed.local_only): rank 0
of a data-parallel group evaluates alone.
`image_metrics` computes the same image metrics for two uint8 sets (`python -m bench.metrics`)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader

from bench.core import run_folder
from bench.core.atomic import atomic_path
from bench.core.images import to_float, to_uint8
from bench.evaluation.metrics import keys
from bench.evaluation.metrics.registry import Batch
from bench.evaluation.precision import evaluation_precision
from bench.evaluation.stream import Evaluation, MetricStream, evaluate_images
from bench.models.autoencoder import VQAutoencoder
from datasets.base import ImageDataset
from methods import distributed

GRID_IMAGES = 16


@torch.no_grad()
def reconstruct_batch(model: VQAutoencoder, images: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    """(reconstructions uint8 on the CPU, code indices) of one batch of uint8 images; `model` in eval
    mode. float32 with TF32 off, on one process (see the module docstring)."""
    x = to_float(images.to(device))
    with evaluation_precision(device.type), distributed.local_only():
        xrec, out = model(x)
    return to_uint8(xrec).cpu(), out.indices


class GridImages:
    """The first n originals and reconstructions of a stream."""

    def __init__(self, n: int = GRID_IMAGES) -> None:
        self.n = n
        self.originals: list[Tensor] = []
        self.recons: list[Tensor] = []

    def update(self, batch: Batch) -> None:
        room = self.n - sum(len(t) for t in self.originals)
        if room > 0:
            self.originals.append(batch.originals[:room].clone())
            self.recons.append(batch.recons[:room].clone())

    def save(self, path: Path) -> None:
        save_grid(torch.cat(self.originals), torch.cat(self.recons), path, self.n)


def save_grid(originals: Tensor, recons: Tensor, path: Path, n: int = GRID_IMAGES) -> None:
    """Two rows: originals above, reconstructions below."""
    n = min(n, len(originals))
    top = torch.cat(list(originals[:n]), dim=2)
    bottom = torch.cat(list(recons[:n]), dim=2)
    grid = torch.cat([top, bottom], dim=1).permute(1, 2, 0).numpy()
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(np.ascontiguousarray(grid)).save(tmp, format="PNG")


def image_names(dataset: ImageDataset) -> list[str]:
    """The dataset's image names in split order (every dataset under datasets/ has them)."""
    names = getattr(dataset, "names", None)
    if names is None:
        raise TypeError(f"{type(dataset).__name__} has no image names: per-image metrics are stored by name")
    names = [str(n) for n in names]
    if len(names) != len(dataset):
        raise ValueError(f"{type(dataset).__name__} has {len(names)} names for {len(dataset)} images")
    return names


def write_per_image(path: Path, names: list[str], per_image: dict[str, np.ndarray]) -> None:
    """run_folder.PER_IMAGE: one float64 array per per-image metric key that ran, and `names`."""
    if "names" in per_image:
        raise ValueError("'names' cannot be a metric key: per_image.npz keeps the image names under it")
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in per_image.items()}
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, names=np.array(names, dtype=str), **arrays)


def write_files(run_dir: Path, result: Evaluation, names: list[str]) -> None:
    write_per_image(run_dir / run_folder.PER_IMAGE, names, result.per_image)
    for name, array in result.files.items():
        with atomic_path(run_dir / name, suffix=Path(name).suffix) as tmp:
            np.save(tmp, array)


def evaluate(model: VQAutoencoder, dataset: ImageDataset, run_dir: Path, device: torch.device,
             batch_size: int = 64, num_workers: int = 0, perceptual: bool = True,
             fixed_reference: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics, protocol) for the record; writes the grid, the code histogram, the per-image values
    and the features into `run_dir`. `perceptual=False` skips LPIPS/rFID/KID (None in the record, the
    reason in the protocol). The protocol's "evaluation_precision" says how it was computed.
    `fixed_reference` (fid_reference.fixed_reference of a --fid-reference other than val) is what rFID
    compares the reconstructions with instead of their originals."""
    with evaluation_precision(device.type), distributed.local_only():
        return _evaluate(model, dataset, run_dir, device, batch_size, num_workers, perceptual, fixed_reference)


def _evaluate(model: VQAutoencoder, dataset: ImageDataset, run_dir: Path, device: torch.device, batch_size: int,
              num_workers: int, perceptual: bool, fixed_reference: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
    t0 = time.perf_counter()
    model.eval()
    q = model.quantizer
    names = image_names(dataset)
    loader = lambda: DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)  # noqa: E731
    stream = MetricStream(device, batch_size, len(dataset), dataset.protocol, codebook_size=q.codebook_size,
                          code_groups=q.code_groups, perceptual=perceptual, reread_originals=loader,
                          fixed_reference=fixed_reference)
    grid = GridImages()
    for images in loader():
        recons, indices = reconstruct_batch(model, images, device)
        batch = Batch(images.cpu(), recons, indices)
        stream.update(batch)
        grid.update(batch)
    result = stream.finish()
    grid.save(run_dir / run_folder.GRID)
    write_files(run_dir, result, names)
    metrics = {key: None for key in keys.RECORD_METRICS}
    metrics.update(result.metrics)
    protocol = {
        **dataset.protocol,
        "n_images": len(names),
        "uint8_boundary": "clamp [-1,1] -> round((x+1)*127.5) -> uint8, once, before every metric",
        **result.protocol,  # every metric's entry, and "evaluation_precision" (MetricStream.finish)
        "per_image": f"{run_folder.PER_IMAGE}: {', '.join(sorted(result.per_image))} per image, with names",
        "eval_s": time.perf_counter() - t0,
    }
    return metrics, protocol


def image_metrics(originals: Tensor, recons: Tensor, reference: dict[str, Any] | None = None,
                  batch_size: int = 64, device: torch.device | str = "cpu", perceptual: bool = True,
                  use_cache: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics, protocol entries) of reconstructions against their originals, both uint8 (N, 3, H, W),
    through the same registry and stream as a run (see stream.evaluate_images for the full result).

    `reference` is the dataset's protocol (dataset, split, resolution): with it, the originals' FID
    statistics come from the on-disk cache. `perceptual=False` leaves LPIPS, rFID and KID None (and
    says so in the protocol); they cost about 0.2 s per image on 2 CPU cores."""
    result = evaluate_images(originals, recons, reference, batch_size, device, perceptual, use_cache)
    return result.metrics, result.protocol

