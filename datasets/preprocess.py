"""Shared preprocessing of every dataset read from disk: decode -> 8-bit RGB -> resize the shorter side
to the resolution (antialiased) -> centre crop (val) or random crop + horizontal flip (train).

Everything here is recorded in the dataset's `protocol`, because published numbers differ mostly by
these choices. The random crop and flip are a pure function of (seed, image name, epoch), so a run is
deterministic whatever the number of DataLoader workers, and the cached path gives the same tensors
as decoding every time: both go through `stored_form` then `finish`.
"""
from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

# PIL's resize is antialiased for every filter but NEAREST: the kernel is widened by the scale factor
# when downsampling (unlike cv2.resize / albumentations without INTER_AREA).
FILTERS = {
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "bilinear": Image.Resampling.BILINEAR,
    "box": Image.Resampling.BOX,
}
TRAIN_CROPS = ("random", "center")
# "shorter": the shorter side to the resolution, aspect kept, then a crop (taming's default);
# "square": straight to resolution x resolution, aspect not kept, no crop (VQCT's ADE20K config).
RESIZES = ("shorter", "square")
ALPHA_BACKGROUND = (255, 255, 255)  # transparent pixels become white, not whatever colour they hide
# 16-bit RGB(A) PNGs never reach to_rgb8 as 16-bit: PIL has no such mode and decodes them to RGB(A) by
# keeping each sample's high byte, so their rule is v // 256, not the grey rule (they differ by at most 1).
COLOR_RULE = ("8-bit RGB: grey/1-bit/palette/CMYK/YCbCr/LAB converted by PIL; alpha (RGBA, LA, palette "
              "transparency) composited over white; 16-bit grey (I;16*, I) scaled by 1/257 and rounded; "
              "16-bit RGB/RGBA PNG: high byte (v // 256, PIL's decoder); "
              "EXIF orientation ignored (as torchvision and taming do)")


@dataclass(frozen=True)
class Preprocess:
    resolution: int
    crop: str  # "center" or "random" (for this split)
    hflip: bool  # random horizontal flip, p = 0.5 (train only)
    resize_filter: str = "bicubic"
    seed: int = 0  # run seed: different seeds see different crops
    resize: str = "shorter"  # one of RESIZES

    def __post_init__(self) -> None:
        if self.resize not in RESIZES:
            raise ValueError(f"resize must be one of {RESIZES}, got {self.resize!r}")
        if self.crop not in TRAIN_CROPS:
            raise ValueError(f"crop must be one of {TRAIN_CROPS}, got {self.crop!r}")
        if self.resize_filter not in FILTERS:
            raise ValueError(f"resize_filter must be one of {sorted(FILTERS)}, got {self.resize_filter!r}")

    @property
    def stores_full(self) -> bool:
        """Whether the stored (cacheable) form keeps the whole resized image (needed by a random crop)."""
        return self.crop == "random"

    def describe(self) -> dict[str, Any]:
        resize = (f"shorter side to {self.resolution} px, PIL {self.resize_filter} (antialiased), aspect kept"
                  if self.resize == "shorter" else
                  f"to {self.resolution}x{self.resolution} px, PIL {self.resize_filter} (antialiased), aspect not kept")
        return {
            "resize": resize + "; smaller images are upscaled and counted",
            "crop": f"{self.crop} {self.resolution}x{self.resolution}"
                    + (" (offset seeded by run seed, image name and epoch)" if self.crop == "random" else ""),
            "hflip": "p=0.5, seeded by run seed, image name and epoch" if self.hflip else "off",
            "color": COLOR_RULE,
        }


def to_rgb8(img: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit RGB, by the rule in COLOR_RULE."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(img).astype(np.float64)
        a = np.clip(np.rint(a / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if mode == "F":
        return img.convert("L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
        if mode == "RGB":
            return img
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def resize_image(img: Image.Image, p: Preprocess) -> tuple[np.ndarray, bool]:
    """(HWC uint8 array resized by p.resize, whether it had to be upscaled)."""
    if p.resize == "square":
        w, h = img.size
        if (w, h) != (p.resolution, p.resolution):
            img = img.resize((p.resolution, p.resolution), FILTERS[p.resize_filter], reducing_gap=None)
        return np.asarray(img, dtype=np.uint8), min(w, h) < p.resolution
    return resize_shorter(img, p.resolution, p.resize_filter)


def resize_shorter(img: Image.Image, resolution: int, resize_filter: str) -> tuple[np.ndarray, bool]:
    """(HWC uint8 array with shorter side == resolution, whether it had to be upscaled)."""
    w, h = img.size
    short = min(w, h)
    upscaled = short < resolution
    if short != resolution:
        if w <= h:
            size = (resolution, max(resolution, round(h * resolution / w)))
        else:
            size = (max(resolution, round(w * resolution / h)), resolution)
        img = img.resize(size, FILTERS[resize_filter], reducing_gap=None)
    return np.asarray(img, dtype=np.uint8), upscaled


def center_offsets(h: int, w: int, r: int) -> tuple[int, int]:
    return (h - r) // 2, (w - r) // 2


def stored_form(resized: np.ndarray, p: Preprocess) -> np.ndarray:
    """What the cache keeps: the whole resized image for a random crop, else the centre crop."""
    if p.stores_full:
        return np.ascontiguousarray(resized)
    top, left = center_offsets(resized.shape[0], resized.shape[1], p.resolution)
    return np.ascontiguousarray(resized[top : top + p.resolution, left : left + p.resolution])


def item_rng(seed: int, name: str, epoch: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(name.encode()), int(epoch)])


def finish(stored: np.ndarray, p: Preprocess, name: str, epoch: int) -> Tensor:
    """Stored form -> uint8 (3, R, R) tensor: crop (random crops from the full resized image) and flip."""
    r = p.resolution
    h, w = stored.shape[:2]
    rng = item_rng(p.seed, name, epoch) if (p.crop == "random" or p.hflip) else None
    if p.crop == "random":
        top = int(rng.integers(0, h - r + 1))
        left = int(rng.integers(0, w - r + 1))
    else:
        top, left = center_offsets(h, w, r)
    out = stored[top : top + r, left : left + r]
    if p.hflip and rng.random() < 0.5:
        out = out[:, ::-1]
    return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1)))


def decode(path: str) -> Image.Image:
    """Open and fully decode (a truncated file raises here, not later)."""
    try:
        with Image.open(path) as img:
            img.load()
            return to_rgb8(img)
    except UnidentifiedImageError:
        # PIL says "cannot identify image file" for an empty file too, which reads like a format problem;
        # a 0-byte file (an interrupted copy or download) is worth naming as such
        if os.path.getsize(path) == 0:
            raise OSError("empty file (0 bytes)") from None
        raise
