"""`cub200`: Caltech-UCSD Birds-200-2011 (Wah et al., 2011), 11,788 bird images of 200 species.

Get it from https://www.vision.caltech.edu/datasets/cub_200_2011/ (CUB_200_2011.tgz). Expected under
the data root as `cub200/` or `CUB_200_2011/` (or `cub200/CUB_200_2011/`), the release as unpacked:
  CUB_200_2011/images.txt              "<image id> <class folder>/<file>.jpg"
  CUB_200_2011/train_test_split.txt    "<image id> <1 = train, 0 = test>"
  CUB_200_2011/images/001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg
Splits: the official train_test_split.txt, 5,994 train / 5,794 test (the test split serves as val).
Train and test are checked never to overlap, by id and by file: the public VQCT code used one file
for both. Names are paths under images/.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.core.errors import UserError

from . import files
from .registry import register_dataset

NAME = "cub200"
FOLDERS = ("cub200", "CUB_200_2011", "cub200/CUB_200_2011", "CUB200")
LAYOUT = "CUB_200_2011/{images.txt, train_test_split.txt, images/<class>/<file>.jpg}"
OFFICIAL = {"train": 5_994, "val": 5_794}


def _detect(folder: Path) -> Path | None:
    for base in (folder, folder / "CUB_200_2011"):
        if (base / "images.txt").is_file() and (base / "images").is_dir():
            return base
    return None


def _locate(root: str | None, path: str | None) -> Path:
    return files.locate(NAME, root, path, FOLDERS, _detect, LAYOUT)[1]


def _table(path: Path, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for ln in files.read_lines(path):
        parts = ln.split(maxsplit=1)
        if len(parts) != 2:
            raise UserError(f"dataset {NAME!r}: malformed line in {path}: {ln!r}; expected '<image id> <{what}>'")
        if parts[0] in out:
            raise UserError(f"dataset {NAME!r}: image id {parts[0]} appears twice in {path}")
        out[parts[0]] = parts[1].strip()
    return out


def splits(base: Path) -> dict[str, list[str]]:
    """Relative image paths of both splits, checked: every file exists, every id is in one split."""
    images = _table(base / "images.txt", "class folder/file.jpg")
    split_file = base / "train_test_split.txt"
    if not split_file.is_file():
        raise UserError(f"dataset {NAME!r}: {split_file} is missing; expected {LAYOUT}")
    is_train = _table(split_file, "1 or 0")
    bad = [i for i, v in is_train.items() if v not in ("0", "1")]
    if bad:
        raise UserError(f"dataset {NAME!r}: {split_file} has {len(bad)} flag(s) other than 0/1 (ids {', '.join(bad[:5])})")
    unknown = sorted(set(is_train) - set(images))
    unsplit = sorted(set(images) - set(is_train))
    if unknown or unsplit:
        raise UserError(f"dataset {NAME!r}: images.txt and train_test_split.txt disagree: {len(unsplit)} id(s) "
                        f"without a split (first: {', '.join(unsplit[:5])}), {len(unknown)} unknown id(s) "
                        f"(first: {', '.join(unknown[:5])})")
    missing = [rel for rel in images.values() if not (base / "images" / rel).is_file()]
    if missing:
        raise files.missing_error(NAME, "images.txt", missing, base / "images")
    out = {"train": [images[i] for i in images if is_train[i] == "1"],
           "val": [images[i] for i in images if is_train[i] == "0"]}
    # the ids are disjoint by construction; the files must be too (a path listed under two ids)
    files.check_disjoint(NAME, out["train"], out["val"])
    assert not set(out["train"]) & set(out["val"])
    return out


# Preprocessing of published configurations (`--dataset-option recipe=vqct`). VQCT's CUB config
# takes random crops and flips (this package's default for training, named for the record).
RECIPES = {"vqct": {"train_crop": "random", "hflip": True}}


@register_dataset(NAME, "CUB-200-2011 birds; official train_test_split.txt 5,994/5,794, checked disjoint",
                  reads_files=True, locate=_locate)
def cub200(split: str, resolution: int, root: str | None = None, path: str | None = None,
           **options: Any) -> files.ImageFiles:
    base = _locate(root, path)
    rels = splits(base)[split]
    items = [(rel, base / "images" / rel) for rel in rels]
    info = {"layout": "CUB_200_2011", "split_rule": "official train_test_split.txt (test serves as val)"}
    return files.make(NAME, split, resolution, items, info, where=base, layout=LAYOUT, official=OFFICIAL, recipes=RECIPES, **options)
