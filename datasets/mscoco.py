"""`mscoco`: Microsoft COCO images (Lin et al., 2014); only the images are read.

Get them from https://cocodataset.org/#download (train2017.zip, val2017.zip; or the 2014 files).
Expected under the data root as `mscoco/` or `coco/`, with the release's folders directly inside or
under `images/`:
  mscoco/train2017/000000000009.jpg   (118,287)     mscoco/val2017/000000000139.jpg   (5,000)
  mscoco/train2014/COCO_train2014_000000000009.jpg (82,783)   mscoco/val2014/... (40,504)
`year="auto"` reads 2017 when its folders are there, else 2014 (recorded); `year=2014` forces it.
Splits: the release's train and val folders. Names are file names.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.core.errors import UserError

from . import files
from .registry import register_dataset

NAME = "mscoco"
FOLDERS = ("mscoco", "coco", "COCO")
LAYOUT = "train2017/*.jpg and val2017/*.jpg (or train2014/, val2014/), directly or under images/"
OFFICIAL = {2017: {"train": 118_287, "val": 5_000}, 2014: {"train": 82_783, "val": 40_504}}


def _years(folder: Path) -> dict[int, Path]:
    """Years whose train folder holds images, with the folder holding train<year>/ and val<year>/."""
    out: dict[int, Path] = {}
    for base in (folder, folder / "images"):
        for year in (2017, 2014):
            if year not in out and files.has_images(base / f"train{year}"):
                out[year] = base
    return out


def _locate(root: str | None, path: str | None) -> Path:
    return files.locate(NAME, root, path, FOLDERS, _years, LAYOUT)[0]


# Preprocessing of published configurations (`--dataset-option recipe=vqct`). VQCT's COCO config
# resizes the shorter side, centre-crops and flips at random, at validation as well as in training.
RECIPES = {"vqct": {"train_crop": "center", "hflip": True, "val_hflip": True}}


@register_dataset(NAME, "MS-COCO images, 2017 (118,287/5,000) or 2014 (82,783/40,504) train/val folders",
                  reads_files=True, locate=_locate)
def mscoco(split: str, resolution: int, root: str | None = None, path: str | None = None, year: str | int = "auto",
           **options: Any) -> files.ImageFiles:
    folder, years = files.locate(NAME, root, path, FOLDERS, _years, LAYOUT)
    if year == "auto":
        year = max(years)
    try:
        year = int(year)
    except (TypeError, ValueError):
        raise UserError(f"mscoco year must be auto, 2017 or 2014; got {year!r}") from None
    if year not in OFFICIAL:
        raise UserError(f"mscoco year must be auto, 2017 or 2014; got {year!r}")
    if year not in years:
        raise UserError(f"dataset {NAME!r}: no train{year}/ with images under {folder}; expected {LAYOUT}")
    split_dir = years[year] / f"{split}{year}"
    if not split_dir.is_dir():
        raise UserError(f"dataset {NAME!r}: no folder {split_dir}; expected {LAYOUT}")
    items = [(p.name, p) for p in files.list_images(split_dir, recursive=False)]
    info = {"layout": f"COCO {year}", "year": year, "split_rule": f"the release's {split}{year}/ folder"}
    return files.make(NAME, split, resolution, items, info, where=split_dir, layout=LAYOUT, official=OFFICIAL[year],
                      recipes=RECIPES, **options)
