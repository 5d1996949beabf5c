"""Decorator registry of datasets: `@register_dataset("name", description)` on a factory
`(split, resolution, root, **options) -> torch Dataset` of uint8 (3, R, R) images.

Names: a dataset may have aliases (`adeg20k` -> `ade20k`); records always carry the canonical name.
A dataset registered with `path_in_name=True` is named `NAME:PATH` (`imagefolder:/data/pics`); its
canonical name holds the absolute path, which is the identity of that data.

Options: `limit_val` (evaluate on the first N val images by sorted name, recorded) works for every
dataset. Datasets read from files (`reads_files=True`) also take datasets.files.FILE_OPTIONS (crop,
flip, resize filter, path, cache, skip_bad_images, seed); the embedded ones ignore the options that
only concern files (`cache`, `skip_bad_images`, `seed`) and refuse a `path`.
"""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from typing import Any, Callable

from torch.utils.data import Dataset

from bench.core.errors import UserError
from methods.registry import unknown_name_message

SPLITS = ("train", "val")
FILE_ONLY_RUNTIME = ("cache", "skip_bad_images", "seed", "cache_workers")


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    factory: Callable[..., Dataset]
    description: str
    aliases: tuple[str, ...] = ()
    reads_files: bool = False
    path_in_name: bool = False
    # (root, path) -> folder; raises the one-line missing-folder UserError. Cheap (no full listing),
    # so a run can check its data before any work starts.
    locate: Callable[[str | None, str | None], Any] | None = None


_REGISTRY: dict[str, DatasetEntry] = {}
_ALIASES: dict[str, str] = {}


def register_dataset(name: str, description: str, *, aliases: tuple[str, ...] = (), reads_files: bool = False,
                     path_in_name: bool = False, locate: Callable[..., Any] | None = None
                     ) -> Callable[[Callable[..., Dataset]], Callable[..., Dataset]]:
    def wrap(factory: Callable[..., Dataset]) -> Callable[..., Dataset]:
        for n in (name, *aliases):
            if n in _REGISTRY or n in _ALIASES:
                raise ValueError(f"dataset {n!r} is already registered")
        _REGISTRY[name] = DatasetEntry(name, factory, description, tuple(aliases), reads_files, path_in_name, locate)
        for a in aliases:
            _ALIASES[a] = name
        return factory

    return wrap


def available() -> list[str]:
    return sorted(_REGISTRY)


def describe() -> dict[str, str]:
    out = {}
    for name in available():
        e = _REGISTRY[name]
        label = f"{name}:PATH" if e.path_in_name else name
        out[label] = e.description + (f" (alias: {', '.join(e.aliases)})" if e.aliases else "")
    return out


def _split_name(name: str) -> tuple[str, str | None]:
    base, sep, arg = str(name).partition(":")
    return base, (arg if sep else None)


def entry(name: str) -> DatasetEntry:
    """The entry of a name, an alias, or a `NAME:PATH` form."""
    base, arg = _split_name(name)
    base = _ALIASES.get(base, base)
    if base not in _REGISTRY:
        raise UserError(unknown_name_message("dataset", str(name), available() + sorted(_ALIASES)))
    e = _REGISTRY[base]
    if e.path_in_name and not arg:
        raise UserError(f"dataset {base!r} needs a folder: use {base}:PATH, e.g. {base}:/data/my_images")
    if arg is not None and not e.path_in_name:
        raise UserError(f"dataset {base!r} takes no ':PATH' in its name; use --dataset-path {base}=PATH")
    return e


def canonical_name(name: str) -> str:
    """What records carry: aliases resolved, and `NAME:PATH` with PATH absolute."""
    e = entry(name)
    if e.path_in_name:
        return f"{e.name}:{os.path.abspath(os.path.expanduser(_split_name(name)[1]))}"
    return e.name


def _path(name: str, path: str | None) -> str | None:
    e = entry(name)
    if e.path_in_name:
        return canonical_name(name).split(":", 1)[1]
    if path and not e.reads_files:
        raise UserError(f"dataset {e.name!r} is embedded and reads no folder; drop its --dataset-path")
    return path


def check_options(name: str, options: dict[str, Any]) -> None:
    """Fail on an option the dataset does not take (before any work starts)."""
    e = entry(name)
    params = inspect.signature(e.factory).parameters
    accepted = {k for k, p in params.items() if p.kind is not p.VAR_KEYWORD} - {"split", "resolution", "root"}
    accepted |= {"limit_val"}
    if e.reads_files:
        from .files import FILE_OPTIONS

        accepted |= set(FILE_OPTIONS)
    else:
        accepted |= set(FILE_ONLY_RUNTIME) | {"path"}  # a path is refused with its own message
    for key in options:
        if key not in accepted:
            raise UserError(f"dataset {e.name!r} has no option {key!r}; it takes: {', '.join(sorted(accepted))}")
    lv = options.get("limit_val")
    if lv is not None and (isinstance(lv, bool) or not isinstance(lv, int) or lv < 1):
        raise UserError(f"limit_val must be a positive integer, got {lv!r}")


def locate(name: str, root: str | None = None, path: str | None = None) -> Any:
    """Find the dataset's folder without listing it (a one-line UserError when it is missing or
    empty); None for embedded datasets."""
    e = entry(name)
    path = _path(name, path)
    return e.locate(root, path) if e.locate is not None else None


def create(name: str, split: str, resolution: int, root: str | None = None, **options: Any) -> Dataset:
    """The `split` ("train" or "val") of dataset `name` as uint8 (3, resolution, resolution) tensors."""
    e = entry(name)
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if int(resolution) < 8:
        raise UserError(f"resolution must be at least 8 pixels, got {resolution}")
    check_options(name, options)
    options = dict(options)
    path = _path(name, options.pop("path", None))
    if e.reads_files:
        if e.path_in_name:
            options["dataset_name"] = canonical_name(name)
        return e.factory(split=split, resolution=int(resolution), root=root, path=path, **options)
    for key in FILE_ONLY_RUNTIME:  # nothing is decoded from files: no cache, no bad files, no random crops
        options.pop(key, None)
    limit_val = options.pop("limit_val", None)
    ds = e.factory(split=split, resolution=int(resolution), root=root, **options)
    if limit_val is not None and split == "val":
        ds = _first_by_name(ds, limit_val)
    return ds


def _first_by_name(ds: Dataset, n: int) -> Dataset:
    """The first n images by sorted name, for in-memory datasets (UInt8Images)."""
    from .tensor_dataset import UInt8Images

    if not isinstance(ds, UInt8Images):
        raise UserError("limit_val needs a dataset with image names")
    order = sorted(range(len(ds.names)), key=ds.names.__getitem__)[:n]
    order.sort()  # keep the dataset's own order among the chosen images
    protocol = {**ds.protocol, "split_size": len(ds), "limit_val": n,
                "subset": f"first {n} of {len(ds)} by sorted name"}
    return UInt8Images(ds.images[order].clone(), [ds.names[i] for i in order], protocol)
