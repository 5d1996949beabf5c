"""`celebahq`: CelebA-HQ (Karras et al., 2018), 30,000 face images.

Get it from https://github.com/tkarras/progressive_growing_of_gans (built from CelebA), or a resized
copy such as the `celeba_hq_256` folder distributed on Kaggle, or CelebAMask-HQ's `CelebA-HQ-img/`.
Expected under the data root as `celebahq/` (or `celeba_hq_256/`, `CelebA-HQ-img/`, `celeba_hq/`): a
flat folder of images named by their number, `00000.jpg` ... `29999.jpg` (png, and unpadded `0.jpg`
... `29999.jpg`, also work).

Split: taming-transformers' `celebahqtrain.txt` / `celebahqvalidation.txt` (25,000 / 5,000) when they
sit in the dataset folder or its parent; their lines (`imgHQ00042.npy`) are matched to images by
number. Otherwise a documented deterministic split: image k is val when crc32("%05d" % k) / 2^32 < 1/6
(about 5,000 of 30,000), independent of which other images are present.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from . import files
from .registry import register_dataset

NAME = "celebahq"
FOLDERS = ("celebahq", "celeba_hq_256", "celeba_hq", "CelebA-HQ", "CelebA-HQ-img", "CelebAMask-HQ/CelebA-HQ-img")
LAYOUT = "a flat folder of 00000.jpg ... 29999.jpg (or .png), e.g. celeba_hq_256/"
OFFICIAL = {"train": 25_000, "val": 5_000}
VAL_FRACTION = 1 / 6
SPLIT_FILES = {"train": "celebahqtrain.txt", "val": "celebahqvalidation.txt"}


def _detect(folder: Path) -> bool:
    return any(files.number_of(p.name) is not None for p in files.list_images(folder, recursive=False)[:50]) \
        if files.has_images(folder) else False


def _locate(root: str | None, path: str | None) -> Path:
    return files.locate(NAME, root, path, FOLDERS, _detect, LAYOUT)[0]


@register_dataset(NAME, "CelebA-HQ faces (30k, flat NNNNN.jpg); taming split files or a hash split 25k/5k",
                  reads_files=True, locate=_locate)
def celebahq(split: str, resolution: int, root: str | None = None, path: str | None = None,
             **options: Any) -> files.ImageFiles:
    folder = _locate(root, path)
    images = files.numbered_images(folder, recursive=False)
    listed = files.taming_split(NAME, images, SPLIT_FILES, folder, where=folder)
    if listed:
        by_split, rule = listed
        numbers = by_split[split]
    else:
        numbers = [k for k in images if files.hash_split(f"{k:05d}", VAL_FRACTION) == split]
        rule = 'hash: val when crc32("%05d" % number) / 2^32 < 1/6'
    items = [(f"{k:05d}{images[k].suffix}", images[k]) for k in numbers]
    info = {"layout": "flat numbered folder", "split_rule": rule}
    return files.make(NAME, split, resolution, items, info, where=folder, layout=LAYOUT, official=OFFICIAL, **options)
