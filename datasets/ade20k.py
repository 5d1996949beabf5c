"""`ade20k` (alias `adeg20k`, the spelling in the project's documented example): ADE20K scene images
(Zhou et al., 2017); only the RGB images are read, never the segmentation masks.

Get it from https://ade20k.csail.mit.edu/ (full release, registration) or the SceneParsing challenge
file http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip. Expected under the data
root as `ade20k/` (or directly `ADEChallengeData2016/` / `ADE20K_2021_17_01/`), in either layout:
  ADEChallengeData2016/images/training/ADE_train_00000001.jpg    (20,210 train)
  ADEChallengeData2016/images/validation/ADE_val_00000001.jpg    (2,000 val)
  ADE20K_2021_17_01/images/ADE/training/<scene folders>/ADE_train_00000001.jpg   (full release, used
  ADE20K_2021_17_01/images/ADE/validation/<scene folders>/ADE_val_00000001.jpg    by the seed paper)
Splits: the release's own training / validation folders. Image names are file names, the same in
both layouts, so `limit_val` picks the same images from either.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from . import files
from .registry import register_dataset

NAME = "ade20k"
FOLDERS = ("ade20k", "ADE20K", "ADEChallengeData2016", "ADE20K_2021_17_01")
LAYOUT = ("ADEChallengeData2016/images/{training,validation}/*.jpg or "
          "ADE20K_2021_17_01/images/ADE/{training,validation}/<scene folders>/*.jpg")
OFFICIAL = {"challenge": {"train": 20_210, "val": 2_000}, "full": {"train": 25_574, "val": 2_000}}
SPLIT_DIRS = {"train": "training", "val": "validation"}


def _detect(folder: Path) -> tuple[str, Path] | None:
    """('challenge' | 'full', folder holding training/ and validation/)."""
    for base in [folder, folder / "ADEChallengeData2016", *sorted(folder.glob("ADE20K_*"))]:
        if files.has_images(base / "images" / "training"):
            return "challenge", base / "images"
        if files.has_images(base / "images" / "ADE" / "training", recursive=True):
            return "full", base / "images" / "ADE"
    return None


def _locate(root: str | None, path: str | None) -> Path:
    return files.locate(NAME, root, path, FOLDERS, _detect, LAYOUT)[0]


def _is_jpg(name: str) -> bool:
    return name.lower().endswith(".jpg") and not name.startswith(".")


# Preprocessing of published configurations (`--dataset-option recipe=vqct`). VQCT's ADE20K config
# resizes straight to the resolution (no crop, aspect not kept) and does not flip.
RECIPES = {"vqct": {"resize": "square", "train_crop": "center", "hflip": False}}


@register_dataset(NAME, "ADE20K scenes (ADEChallengeData2016 20,210/2,000 or full release 25,574/2,000)",
                  aliases=("adeg20k",), reads_files=True, locate=_locate)
def ade20k(split: str, resolution: int, root: str | None = None, path: str | None = None,
           **options: Any) -> files.ImageFiles:
    folder, (kind, images) = files.locate(NAME, root, path, FOLDERS, _detect, LAYOUT)
    split_dir = images / SPLIT_DIRS[split]
    if not split_dir.is_dir():
        raise files.UserError(f"dataset {NAME!r}: no folder {split_dir}; expected {LAYOUT}")
    paths = files.list_images(split_dir, recursive=kind == "full", keep=_is_jpg)
    items = [(p.name, p) for p in paths]
    other = files.list_images(images / SPLIT_DIRS["val" if split == "train" else "train"], recursive=kind == "full",
                              keep=_is_jpg) if (images / SPLIT_DIRS["val" if split == "train" else "train"]).is_dir() else []
    files.check_disjoint(NAME, [n for n, _ in items], [p.name for p in other])
    info = {"layout": "ADEChallengeData2016" if kind == "challenge" else "ADE20K full release",
            "split_rule": f"the release's {SPLIT_DIRS[split]}/ folder"}
    return files.make(NAME, split, resolution, items, info, where=split_dir, layout=LAYOUT, official=OFFICIAL[kind],
                      recipes=RECIPES, **options)
