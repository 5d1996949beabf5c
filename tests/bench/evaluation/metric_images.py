"""Small real images for the metric tests: 32 px tiles of the embedded `photos` validation split,
and Gaussian-blurred copies of them (uint8 in, uint8 out)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.functional import gaussian_blur


def tiles(n: int, resolution: int = 32, offset: int = 0) -> torch.Tensor:
    """n uint8 (3, R, R) tiles of photos/val, spread over the split so they come from several photos."""
    import datasets

    images = datasets.create("photos", "val", resolution).images
    step = max(1, (len(images) - offset) // n)
    return images[offset::step][:n].clone()


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma == 0:
        return images.clone()
    k = 2 * int(3 * sigma + 0.5) + 1
    out = gaussian_blur(images.float(), [k, k], [sigma, sigma])
    return out.round().clamp(0, 255).to(torch.uint8)


def write_folder(images: torch.Tensor, folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, im in enumerate(images):
        name = f"img_{i:03d}.png"
        Image.fromarray(np.ascontiguousarray(im.permute(1, 2, 0).numpy())).save(folder / name)
        names.append(name)
    return names
