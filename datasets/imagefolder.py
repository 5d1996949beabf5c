"""`imagefolder:PATH`: any folder of images, searched recursively (jpg, jpeg, png, bmp, gif, webp, tif,
tiff, ppm, pgm; hidden files and folders skipped; symlinks followed).

Splits: when PATH has both `train/` and `val/` subfolders holding images, those are the splits.
Otherwise a deterministic hash split: an image is val when crc32(its path relative to PATH) / 2^32 <
`val_fraction` (default 0.1, a dataset option recorded with the run). Names are paths relative to the
split's folder (train/ or val/) or to PATH. The canonical name holds the absolute path.

Labels (ImageDataset.labels): when every image of the split lies inside a subfolder (of train/ and
val/, or of PATH), the first folder of its name is its class, as torchvision's ImageFolder; the
classes are the subfolders holding images, of both splits together, sorted by name, so that one
index is one class in either split. A split with images directly in its folder has no labels.
"""
from __future__ import annotations


from pathlib import Path
from typing import Any

from bench.core.errors import UserError

from . import files
from .registry import register_dataset

NAME = "imagefolder"
LAYOUT = "a folder of images (recursive), optionally with train/ and val/ subfolders"
VAL_FRACTION = 0.1


def _detect(folder: Path) -> bool:
    return files.has_images(folder, recursive=True)


def _locate(root: str | None, path: str | None) -> Path:
    return files.locate(f"{NAME}:{path}", root, path, (), _detect, LAYOUT, hint="the PATH of imagefolder:PATH")[0]


@register_dataset(NAME, "any folder of images, recursive; train/ and val/ subfolders, else a 10% hash split",
                  reads_files=True, path_in_name=True, locate=_locate)
def imagefolder(split: str, resolution: int, root: str | None = None, path: str | None = None,
                val_fraction: float = VAL_FRACTION, dataset_name: str | None = None,
                **options: Any) -> files.ImageFiles:
    name = dataset_name or f"{NAME}:{path}"
    if not path:
        raise UserError(f"dataset {NAME!r} needs a folder: use {NAME}:PATH")
    if not 0.0 < float(val_fraction) < 1.0:
        raise UserError(f"imagefolder val_fraction must be between 0 and 1, got {val_fraction!r}")
    folder = files.locate(name, root, path, (), _detect, LAYOUT, hint="the PATH of imagefolder:PATH")[0]
    if files.has_images(folder / "train", recursive=True) and files.has_images(folder / "val", recursive=True):
        base = folder / split
        items = [(p.relative_to(base).as_posix(), p) for p in files.list_images(base)]
        rule = "train/ and val/ subfolders"
    else:
        base = folder
        items = [(rel, p) for p in files.list_images(folder)
                 if files.hash_split(rel := p.relative_to(folder).as_posix(), float(val_fraction)) == split]
        rule = f"hash: val when crc32(relative path) / 2^32 < {float(val_fraction)}"
        if not items:
            n = len(files.list_images(folder))
            raise UserError(f"dataset {name!r}: the hash split leaves {split} empty ({n} image(s) under {folder}); "
                            f"add images, change val_fraction, or make train/ and val/ subfolders")
    info = {"layout": "imagefolder", "split_rule": rule, "val_fraction": None if base != folder else float(val_fraction)}
    ds = files.make(name, split, resolution, items, info, where=base, layout=LAYOUT, **options)
    class_folders = [folder / "train", folder / "val"] if base != folder else [folder]
    _set_labels(ds, class_folders)
    return ds


def _set_labels(ds: files.ImageFiles, class_folders: list[Path]) -> None:
    """Subfolder names as classes (module docstring); leaves the dataset unlabelled otherwise."""
    names = ds.names
    if not names or any("/" not in n for n in names):
        return
    classes = sorted({d.name for f in class_folders if f.is_dir() for d in f.iterdir()
                      if d.is_dir() and not d.name.startswith(".") and files.has_images(d, recursive=True)})
    index = {c: i for i, c in enumerate(classes)}
    ds.label_names = classes
    ds.labels = [index[n.split("/", 1)[0]] for n in names]


