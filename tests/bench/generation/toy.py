"""A toy labelled dataset for the prior's tests: a few fixed 16 px patterns, one class subfolder each
(imagefolder layout with train/ and val/), so that a tokenizer maps every copy of a pattern to one
index grid and a prior can be checked to generate exactly those grids."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

RESOLUTION = 16
CLASSES = ("ramp", "red", "stripes", "checker")  # sorted subfolder order is checker, ramp, red, stripes


def patterns(r: int = RESOLUTION) -> dict[str, np.ndarray]:
    y, x = np.mgrid[0:r, 0:r]
    out = {}
    ramp = np.zeros((r, r, 3), np.uint8)
    ramp[...] = (y * 255 // (r - 1))[..., None]
    out["ramp"] = ramp
    red = np.zeros((r, r, 3), np.uint8)
    red[...] = (230, 40, 40)
    out["red"] = red
    stripes = np.zeros((r, r, 3), np.uint8)
    stripes[..., 1], stripes[..., 2] = 30, ((x // 4) % 2) * 220 + 20
    out["stripes"] = stripes
    checker = np.zeros((r, r, 3), np.uint8)
    checker[..., 1] = (((x // 4) + (y // 4)) % 2) * 200 + 30
    out["checker"] = checker
    return out


def write_toy(root: Path, train_copies: int = 16, val_copies: int = 2) -> Path:
    """The dataset folder; the dataset name is f"imagefolder:{root}" with dataset option hflip=False."""
    for split, n in (("train", train_copies), ("val", val_copies)):
        for name, img in patterns().items():
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(img).save(d / f"{i:03d}.png")
    return root
