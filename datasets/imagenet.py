"""`imagenet`: ILSVRC-2012 classification images (Russakovsky et al., 2015); labels are not used.

Get it from https://image-net.org/download.php (registration; ILSVRC2012_img_train.tar and
ILSVRC2012_img_val.tar) or the Kaggle "ImageNet Object Localization Challenge". Expected under the
data root as `imagenet/` (or `ILSVRC2012/`, or the Kaggle `ILSVRC/Data/CLS-LOC/`):
  imagenet/train/n01440764/n01440764_10026.JPEG   (1,281,167 in 1,000 class folders)
  imagenet/val/ILSVRC2012_val_00000001.JPEG       (50,000; flat as unpacked, or per class
  imagenet/val/n01440764/ILSVRC2012_val_00000293.JPEG   after the usual valprep.sh)
Splits: train/ and the official val/ set. Names are file names, so `limit_val` (first N by sorted
name) picks the same images, spread over all classes, from either val layout.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from . import files
from .registry import register_dataset

NAME = "imagenet"
FOLDERS = ("imagenet", "ImageNet", "ILSVRC2012", "ILSVRC/Data/CLS-LOC")
LAYOUT = "train/<wnid>/*.JPEG and val/*.JPEG (flat or val/<wnid>/*.JPEG)"
OFFICIAL = {"train": 1_281_167, "val": 50_000}


def _detect(folder: Path) -> str | None:
    train = folder / "train"
    if not train.is_dir():
        return None
    with files.os.scandir(train) as it:
        for e in it:
            if e.is_dir() and files.has_images(Path(e.path)):
                return "per-class train"
    return None


def _locate(root: str | None, path: str | None) -> Path:
    return files.locate(NAME, root, path, FOLDERS, _detect, LAYOUT)[0]


@register_dataset(NAME, "ImageNet ILSVRC-2012 train/<wnid>/*.JPEG (1.28M) and val/ (50k, flat or per class)",
                  reads_files=True, locate=_locate)
def imagenet(split: str, resolution: int, root: str | None = None, path: str | None = None,
             **options: Any) -> files.ImageFiles:
    folder = _locate(root, path)
    split_dir = folder / split
    if not files.has_images(split_dir, recursive=True):
        raise files.UserError(f"dataset {NAME!r}: no images under {split_dir}; expected {LAYOUT}")
    if split == "train":
        paths = files.list_images(split_dir, recursive=True)
        layout = "train/<wnid>/"
    else:
        flat = files.has_images(split_dir)
        paths = files.list_images(split_dir, recursive=not flat)
        layout = "val/ flat" if flat else "val/<wnid>/"
    items = [(p.name, p) for p in paths]
    info = {"layout": layout, "split_rule": f"the official {split}/ folder"}
    return files.make(NAME, split, resolution, items, info, where=split_dir, layout=LAYOUT, official=OFFICIAL,
                      **options)
