"""`ffhq`: Flickr-Faces-HQ (Karras et al., 2019), 70,000 face images.

Get it from https://github.com/NVlabs/ffhq-dataset (Google Drive; `download_ffhq.py --images` or
`--thumbs`). Expected under the data root as `ffhq/` (or `FFHQ/`), any of:
  ffhq/images1024x1024/00000/00000.png ... 69000/69999.png   (official, 1024 px, nested by thousands)
  ffhq/thumbnails128x128/00000/00000.png ...                 (official 128 px thumbnails)
  ffhq/00000.png ... 69999.png                               (flat, as taming-transformers keeps it)
With both official folders present, `variant="auto"` takes images1024x1024 (recorded); pass
`variant="thumbnails128x128"` to read the thumbnails.

Split (taming-transformers): images 0-59,999 train, 60,000-69,999 val. When taming's split files
`ffhqtrain.txt` and `ffhqvalidation.txt` sit in the dataset folder or its parent, they decide instead.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.core.errors import UserError

from . import files
from .registry import register_dataset

NAME = "ffhq"
FOLDERS = ("ffhq", "FFHQ")
VARIANTS = ("images1024x1024", "thumbnails128x128")
LAYOUT = ("images1024x1024/00000/00000.png (or thumbnails128x128/..., or a flat folder of 00000.png ... 69999.png) "
          "from https://github.com/NVlabs/ffhq-dataset")
OFFICIAL = {"train": 60_000, "val": 10_000}
FIRST_VAL = 60_000
SPLIT_FILES = {"train": "ffhqtrain.txt", "val": "ffhqvalidation.txt"}


def _image_dir(folder: Path, variant: str = "auto") -> Path | None:
    if variant != "auto":
        return folder / variant if files.has_images(folder / variant, recursive=True) else None
    for v in VARIANTS:
        if files.has_images(folder / v, recursive=True):
            return folder / v
    return folder if files.has_images(folder, recursive=True) else None


def _locate(root: str | None, path: str | None) -> Path:
    return files.locate(NAME, root, path, FOLDERS, _image_dir, LAYOUT)[0]


@register_dataset(NAME, "FFHQ faces (70k; 1024 px, 128 px thumbnails or flat); taming split 60k/10k",
                  reads_files=True, locate=_locate)
def ffhq(split: str, resolution: int, root: str | None = None, path: str | None = None, variant: str = "auto",
         **options: Any) -> files.ImageFiles:
    if variant not in ("auto",) + VARIANTS:
        raise UserError(f"ffhq variant must be one of auto, {', '.join(VARIANTS)}; got {variant!r}")
    folder = _locate(root, path)
    image_dir = _image_dir(folder, variant)
    if image_dir is None:
        raise UserError(f"dataset {NAME!r}: no images under {folder / variant}; expected {LAYOUT}")
    images = files.numbered_images(image_dir)
    listed = files.taming_split(NAME, images, SPLIT_FILES, folder, where=image_dir)
    if listed:
        by_split, rule = listed
        numbers = by_split[split]
    else:
        numbers = [k for k in images if (k >= FIRST_VAL) == (split == "val")]
        rule = f"taming: images 0-{FIRST_VAL - 1} train, {FIRST_VAL}-69999 val"
    items = [(f"{k:05d}{images[k].suffix}", images[k]) for k in numbers]
    info = {"layout": image_dir.name if image_dir != folder else "flat", "split_rule": rule}
    return files.make(NAME, split, resolution, items, info, where=image_dir, layout=LAYOUT, official=OFFICIAL, **options)
