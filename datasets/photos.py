"""`photos`: the embedded default dataset. Non-overlapping square tiles cut from the RGB photographs
that ship inside scikit-image, scikit-learn and matplotlib, so it needs no download.

Each photograph is first downscaled (antialiased) so that its shorter side is at most
16 x resolution pixels, keeping tiles from being featureless texture at small resolutions. It is then
cut into a grid of non-overlapping tiles; almost-constant tiles (the black border of `retina`) are
dropped. A tile goes to "val" when crc32("<photo>/<row>/<col>") % 10 == 0, else to "train": the split
is deterministic and the two splits never share a pixel.
"""
from __future__ import annotations

import functools
import zlib

import numpy as np
import torch
from PIL import Image

from .registry import register_dataset
from .tensor_dataset import UInt8Images

VAL_EVERY = 10  # one tile in ten, by hash, is held out
MIN_TILE_STD = 4.0  # tiles flatter than this (in uint8 levels) carry nothing to reconstruct
MAX_SHORT_SIDE_TILES = 16


def _load_photos() -> dict[str, np.ndarray]:
    import matplotlib.cbook
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = {
        name: getattr(skimage.data, name)()
        for name in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
    }
    sk = load_sample_images()
    for fname, img in zip(sk.filenames, sk.images):
        photos[fname.rsplit("/", 1)[-1].split(".")[0]] = img
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        photos["grace_hopper"] = np.asarray(Image.open(f).convert("RGB"))
    return photos


@functools.lru_cache(maxsize=8)
def _tiles(resolution: int) -> dict[str, tuple[torch.Tensor, list[str]]]:
    per_split: dict[str, list] = {"train": [], "val": []}
    for name, img in sorted(_load_photos().items()):
        h, w = img.shape[:2]
        scale = min(1.0, MAX_SHORT_SIDE_TILES * resolution / min(h, w))
        if scale < 1.0:
            size = (max(resolution, round(w * scale)), max(resolution, round(h * scale)))
            img = np.asarray(Image.fromarray(img).resize(size, Image.Resampling.LANCZOS))
        for r in range(img.shape[0] // resolution):
            for c in range(img.shape[1] // resolution):
                tile = img[r * resolution : (r + 1) * resolution, c * resolution : (c + 1) * resolution]
                if tile.std() < MIN_TILE_STD:
                    continue
                key = f"{name}/{r}/{c}"
                split = "val" if zlib.crc32(key.encode()) % VAL_EVERY == 0 else "train"
                per_split[split].append((key, tile))
    return {
        split: (torch.from_numpy(np.stack([t for _, t in items])).permute(0, 3, 1, 2).contiguous(), [k for k, _ in items])
        for split, items in per_split.items()
    }


@register_dataset("photos", "embedded default: non-overlapping tiles of the photos shipped in scikit-image/-learn, matplotlib")
def photos(split: str, resolution: int, root: str | None = None) -> UInt8Images:
    images, names = _tiles(resolution)[split]
    protocol = {
        "dataset": "photos",
        "split": split,
        "resolution": resolution,
        "preprocessing": f"LANCZOS downscale to short side <= {MAX_SHORT_SIDE_TILES}*R, non-overlapping RxR tiles, "
        f"std>={MIN_TILE_STD}, val = crc32(tile)%{VAL_EVERY}==0",
    }
    return UInt8Images(images.clone(), names, protocol)
