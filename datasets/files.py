"""What every dataset read from a folder shares: finding the folder (data root, per-dataset path),
listing images, one-line errors for bad input, and `ImageFiles`, the torch Dataset that decodes and
preprocesses one image per item.

A loader file (ffhq.py, ...) only knows its dataset's layouts and split rule: it calls `locate` to
find its folder, lists (name, path) pairs per split, and hands them to `make`, which applies the
options shared by all of them (FILE_OPTIONS). A `name` is the image's identity inside the split:
unique, sorted on, used for `limit_val` (first N by sorted name) and to seed random crops.
"""
from __future__ import annotations

import os
import re
import warnings
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from bench.core.errors import UserError

from . import preprocess as pp
from .base import ImageDataset

DATA_ENV = "VQBENCH_DATA"
DEFAULT_DATA_ROOT = "~/data"  # used when neither --data-root nor $VQBENCH_DATA is given
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
SHOW = 5  # how many file names an error or a record lists

# Options every folder dataset accepts. The first group changes the images (part of the run id, in
# RunConfig.dataset_options); `seed` is the run's own seed; the last group does not change a finished
# run's images (RunConfig fields outside the run id): a path, the cache, and skipping files that would
# otherwise fail the run.
IMAGE_OPTIONS = ("limit_val", "train_crop", "hflip", "val_hflip", "resize_filter", "resize", "recipe")
RUNTIME_OPTIONS = ("path", "cache", "skip_bad_images", "seed", "cache_workers")
FILE_OPTIONS = IMAGE_OPTIONS + RUNTIME_OPTIONS

SEEN, BAD, UPSCALED = 1, 2, 4  # per-image flags, shared by DataLoader workers


class BadImageError(UserError):
    """An image that cannot be decoded. A DataLoader worker re-raises it in the main process as
    `BadImageError("Caught BadImageError in DataLoader worker...<traceback>")`; keep only our line."""

    def __init__(self, message: str) -> None:
        if message.startswith("Caught BadImageError"):
            lines = [ln for ln in message.splitlines() if "BadImageError: " in ln]
            if lines:
                message = lines[-1].split("BadImageError: ", 1)[1]
        super().__init__(message)


# ---------------------------------------------------------------------------------------- locating
def data_root(root: str | os.PathLike | None = None) -> tuple[Path, str]:
    """(folder holding the datasets, where that came from): --data-root, then $VQBENCH_DATA, then ~/data."""
    if root:
        return Path(root).expanduser(), "--data-root"
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser(), f"${DATA_ENV}"
    return Path(DEFAULT_DATA_ROOT).expanduser(), f"default {DEFAULT_DATA_ROOT}"


def locate(name: str, root: str | os.PathLike | None, path: str | os.PathLike | None, folders: Sequence[str],
           detect: Callable[[Path], Any], layout: str, hint: str | None = None) -> tuple[Path, Any]:
    """(dataset folder, what `detect` found there). `path` (--dataset-path) is used as given; otherwise
    each of `folders` under the data root is tried. `detect(folder)` returns a truthy description of
    the layout it recognised, or None. Raises a one-line UserError naming the dataset, the paths tried
    and the expected layout."""
    if path:
        candidates, how = [Path(path).expanduser()], hint or f"from --dataset-path {name}=PATH"
    else:
        base, source = data_root(root)
        candidates = [base / f for f in folders]
        how = f"data root {base} from {source}; set --data-root, ${DATA_ENV} or --dataset-path {name}=PATH"
    reasons = []
    for folder in candidates:
        if not folder.is_dir():
            reasons.append(f"{folder} (no such folder)")
            continue
        found = detect(folder)
        if found:
            return folder, found
        reasons.append(f"{folder} (no images in the expected layout)" if not _is_empty(folder) else f"{folder} (empty)")
    raise UserError(f"dataset {name!r}: tried {'; '.join(reasons)}; expected {layout} ({how})")


def _is_empty(folder: Path) -> bool:
    with os.scandir(folder) as it:
        return next(it, None) is None


def is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTS and not name.startswith(".")


def has_images(folder: Path, recursive: bool = False) -> bool:
    """Whether `folder` holds at least one image file (stops at the first)."""
    if not folder.is_dir():
        return False
    if not recursive:
        with os.scandir(folder) as it:
            return any(e.is_file() and is_image(e.name) for e in it)
    for _, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if any(is_image(f) for f in files):
            return True
    return False


def list_images(folder: Path, recursive: bool = True, keep: Callable[[str], bool] = is_image) -> list[Path]:
    """Image files under `folder`, sorted; hidden files and folders are skipped; symlinks followed."""
    out = []
    if not recursive:
        with os.scandir(folder) as it:
            out = [folder / e.name for e in it if keep(e.name) and e.is_file()]
        return sorted(out)
    for here, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(Path(here) / f for f in files if keep(f))
    return sorted(out)


def find_file(folders: Iterable[Path], names: Sequence[str]) -> Path | None:
    """The first existing `folder/name` (split files may sit beside the images or one level up)."""
    for folder in folders:
        for n in names:
            if (folder / n).is_file():
                return folder / n
    return None


def read_lines(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def missing_error(name: str, what: str, missing: list[str], where: Path) -> UserError:
    shown = ", ".join(missing[:SHOW]) + (", ..." if len(missing) > SHOW else "")
    return UserError(f"dataset {name!r}: {what} names {len(missing)} image(s) missing under {where} (first: {shown})")


def hash_split(key: str, val_fraction: float) -> str:
    """'val' for a deterministic `val_fraction` of keys (crc32 of the key), else 'train'."""
    return "val" if zlib.crc32(key.encode()) / 2**32 < val_fraction else "train"


def check_disjoint(name: str, train: Iterable[str], val: Iterable[str]) -> None:
    """Train and val must never share an image (the public VQCT code's CUB lists did)."""
    both = sorted(set(train) & set(val))
    if both:
        raise UserError(f"dataset {name!r}: train and val overlap in {len(both)} image(s) (first: {', '.join(both[:SHOW])})")


# ---------------------------------------------------------------------------------------- dataset
_warned: set[tuple[str, str]] = set()


class ImageFiles(ImageDataset):
    """Images decoded from files, one per item, as uint8 (3, R, R) tensors.

    A key is an index, or (index, epoch): the random crop and flip of a training image are seeded by
    (run seed, image name, epoch); a plain index means epoch 0. With `skip_bad_images`, an unreadable
    file's slot is served by the next readable image of the split (the length and the step-indexed data
    order stay fixed) and the file is counted; otherwise reading it raises BadImageError. Per-image
    flags live in shared memory so counts made in DataLoader workers reach the record."""

    takes_epoch = True  # a sampler may pass (index, epoch) keys: new crops and flips every epoch

    def __init__(self, dataset: str, split: str, names: list[str], paths: list[str], prep: pp.Preprocess,
                 protocol: dict[str, Any], skip_bad_images: bool = False) -> None:
        assert len(names) == len(paths) and len(names) > 0
        self.dataset, self.split = dataset, split
        # fixed-width byte arrays, not lists of str: forked DataLoader workers touching a million Python
        # objects' refcounts would copy every page holding them
        self._names = np.array([n.encode() for n in names])
        self._paths = np.array([os.fsencode(p) for p in paths])
        self.prep, self.skip_bad_images = prep, bool(skip_bad_images)
        self._protocol = protocol
        self.flags = torch.zeros(len(names), dtype=torch.uint8).share_memory_()

    def __len__(self) -> int:
        return len(self._names)

    @property
    def names(self) -> list[str]:
        return [n.decode() for n in self._names]

    @property
    def paths(self) -> list[str]:
        return [os.fsdecode(p) for p in self._paths]

    def name(self, j: int) -> str:
        return self._names[j].decode()

    def path(self, j: int) -> str:
        return os.fsdecode(self._paths[j])

    # -- decoding
    def decode_stored(self, j: int) -> tuple[np.ndarray | None, bool, str | None]:
        """(stored form or None, upscaled, error text) of image j; never raises for a bad file."""
        try:
            img = pp.decode(self.path(j))
        except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, EOFError, ... for bad files
            return None, False, f"{type(exc).__name__}: {exc}"
        resized, upscaled = pp.resize_image(img, self.prep)
        return pp.stored_form(resized, self.prep), upscaled, None

    def _stored(self, j: int) -> np.ndarray | None:
        arr, upscaled, err = self.decode_stored(j)
        return self._note(j, arr, upscaled, err)

    def _note(self, j: int, arr: np.ndarray | None, upscaled: bool, err: str | None) -> np.ndarray | None:
        if err is not None:
            if not self.skip_bad_images:
                raise BadImageError(f"dataset {self.dataset!r}: cannot read image {self.path(j)} ({err}); "
                                    "fix or remove the file, or pass --skip-bad-images to skip and count it")
            self.flags[j] = SEEN | BAD
            return None
        if upscaled:
            self.flags[j] = SEEN | UPSCALED
            if (self.dataset, self.split) not in _warned:
                _warned.add((self.dataset, self.split))
                warnings.warn(f"dataset {self.dataset!r} {self.split}: {self.path(j)} is smaller than "
                              f"{self.prep.resolution} px and was upscaled; such images are counted in the record",
                              stacklevel=3)
        else:
            self.flags[j] = SEEN
        return arr

    def __getitem__(self, key: int | tuple[int, int]) -> Tensor:
        i, epoch = key if isinstance(key, tuple) else (key, 0)
        i = int(i)
        n = len(self)
        if not 0 <= i < n:  # bad images are skipped by wrapping round, so the range check must come first
            raise IndexError(f"dataset {self.dataset!r} {self.split}: index {i} out of range for {n} images")
        for step in range(n):
            j = (i + step) % n
            arr = self._stored(j)
            if arr is not None:
                return pp.finish(arr, self.prep, self.name(j), epoch)
        raise BadImageError(f"dataset {self.dataset!r} {self.split}: none of its {n} images can be read")

    # -- what the record gets
    def stats(self) -> dict[str, Any]:
        f = self.flags.numpy()
        bad = np.flatnonzero(f & BAD)
        up = np.flatnonzero(f & UPSCALED)
        return {
            "images_read": int(np.count_nonzero(f & SEEN)),
            "skip_bad_images": self.skip_bad_images,
            "bad_images_skipped": int(len(bad)),
            "bad_image_examples": [self.name(k) for k in bad[:SHOW]],
            "upscaled_images": int(len(up)),
            "upscaled_examples": [self.name(k) for k in up[:SHOW]],
        }

    @property
    def protocol(self) -> dict[str, Any]:
        """Static description plus the live counts (the evaluator reads this after the whole split)."""
        return {**self._protocol, **self.stats()}


# ---------------------------------------------------------------------------------------- factory
def make(dataset: str, split: str, resolution: int, items: list[tuple[str, str]], info: dict[str, Any], *,
         where: Path, layout: str, official: dict[str, int] | None = None, limit_val: int | None = None,
         train_crop: str = "random", hflip: bool = True, val_hflip: bool = False, resize_filter: str = "bicubic",
         resize: str = "shorter", recipe: str | None = None, recipes: dict[str, dict[str, Any]] | None = None,
         seed: int = 0, skip_bad_images: bool = False, cache: bool = False, cache_workers: int | None = None,
         path: str | None = None) -> ImageFiles:
    """The split as an ImageFiles (or its cached twin). `items` are (name, path) pairs of this split.
    `recipe` names one of the loader's `recipes` (a published configuration's preprocessing, e.g.
    "vqct"); its settings replace the defaults of train_crop, hflip, val_hflip, resize and resize_filter."""
    del path  # already used by the loader to find `where`
    if recipe is not None:
        known = recipes or {}
        if recipe not in known:
            raise UserError(f"dataset {dataset!r} has no preprocessing recipe {recipe!r}; "
                            f"it has: {', '.join(sorted(known)) or '(none)'}")
        chosen = known[recipe]
        train_crop = chosen.get("train_crop", train_crop)
        hflip = chosen.get("hflip", hflip)
        val_hflip = chosen.get("val_hflip", val_hflip)
        resize = chosen.get("resize", resize)
        resize_filter = chosen.get("resize_filter", resize_filter)
    if not items:
        raise UserError(f"dataset {dataset!r}: the {split} split under {where} is empty; expected {layout}")
    items = sorted(items)
    names = [n for n, _ in items]
    dup = sorted({a for a, b in zip(names, names[1:]) if a == b})
    if dup:
        raise UserError(f"dataset {dataset!r}: {len(dup)} image name(s) appear twice in the {split} split "
                        f"(first: {', '.join(dup[:SHOW])})")
    n_split = len(items)
    if limit_val is not None:
        if isinstance(limit_val, bool) or not isinstance(limit_val, int) or limit_val < 1:
            raise UserError(f"limit_val must be a positive integer, got {limit_val!r}")
        if split == "val":
            items = items[:limit_val]
    if train_crop not in pp.TRAIN_CROPS:
        raise UserError(f"train_crop must be one of {', '.join(pp.TRAIN_CROPS)}, got {train_crop!r}")
    for flag, value in (("hflip", hflip), ("val_hflip", val_hflip)):
        if not isinstance(value, bool):
            raise UserError(f"{flag} must be True or False, got {value!r}")
    if resize not in pp.RESIZES:
        raise UserError(f"resize must be one of {', '.join(pp.RESIZES)}, got {resize!r}")
    if resize_filter not in pp.FILTERS:
        raise UserError(f"resize_filter must be one of {', '.join(sorted(pp.FILTERS))}, got {resize_filter!r}")
    prep = pp.Preprocess(resolution, crop="center" if split == "val" else train_crop,
                         hflip=bool(hflip) if split == "train" else bool(val_hflip), resize_filter=resize_filter,
                         seed=int(seed), resize=resize)
    protocol = {
        "dataset": dataset,
        "split": split,
        "resolution": resolution,
        **info,
        "split_size": n_split,
        "official_split_size": (official or {}).get(split),
        "limit_val": limit_val if split == "val" else None,
        "subset": f"first {limit_val} of {n_split} by sorted name" if split == "val" and limit_val else "all",
        "n_images": len(items),
        "preprocessing": {**prep.describe(), **({"recipe": recipe} if recipe else {})},
    }
    ds = ImageFiles(dataset, split, [n for n, _ in items], [str(p) for _, p in items], prep, protocol, skip_bad_images)
    if cache:
        from .cache import cached

        return cached(ds, where, workers=cache_workers)
    return ds


# ---------------------------------------------------------------------------------------- numbered
_DIGITS = re.compile(r"(\d+)$")


def number_of(name: str) -> int | None:
    """The trailing number of a file stem: 00042.png -> 42, imgHQ00042.npy -> 42, 42.jpg -> 42."""
    m = _DIGITS.search(os.path.splitext(os.path.basename(name))[0])
    return int(m.group(1)) if m else None


def numbered_images(folder: Path, recursive: bool = True) -> dict[int, Path]:
    """Images under `folder` whose stem ends in a number, by that number."""
    out: dict[int, Path] = {}
    for p in list_images(folder, recursive=recursive):
        k = number_of(p.name)
        if k is not None:
            out.setdefault(k, p)
    return out


def taming_split(dataset: str, images: dict[int, Path], split_files: dict[str, str], folder: Path,
                 where: Path) -> tuple[list[int], str] | None:
    """(image numbers of each split, the rule) from taming's split files found in `folder` or its
    parent, or None when neither is there; one without the other is an error."""
    lists = {s: find_file([folder, folder.parent], [f]) for s, f in split_files.items()}
    if not any(lists.values()):
        return None
    if not all(lists.values()):
        raise UserError(f"dataset {dataset!r}: found only one of {', '.join(split_files.values())} near {folder}; "
                        "give both or neither")
    return split_from_lists(dataset, images, lists, where), f"taming split files {lists['train']} / {lists['val']}"


def split_from_lists(dataset: str, images: dict[int, Path], lists: dict[str, Path], where: Path) -> dict[str, list[int]]:
    """Image numbers per split from split files whose lines name images (matched by trailing number,
    so taming's `imgHQ00042.npy` finds `00042.jpg`). Raises on images the files name but the folder lacks."""
    out: dict[str, list[int]] = {}
    for split, lst in lists.items():
        entries = read_lines(lst)
        numbers = [number_of(e.split()[0]) for e in entries]
        missing = [e for e, k in zip(entries, numbers) if k is None or k not in images]
        if missing:
            raise missing_error(dataset, lst.name, missing, where)
        out[split] = numbers
    check_disjoint(dataset, [str(k) for k in out.get("train", [])], [str(k) for k in out.get("val", [])])
    return out
