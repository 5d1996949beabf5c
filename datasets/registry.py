"""Decorator registry of datasets: `@register_dataset("name")` on a factory
`(split, resolution, root, **options) -> torch Dataset` of uint8 (3, R, R) images."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

from torch.utils.data import Dataset

from bench.errors import UserError
from methods.registry import unknown_name_message

SPLITS = ("train", "val")


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    factory: Callable[..., Dataset]
    description: str


_REGISTRY: dict[str, DatasetEntry] = {}


def register_dataset(name: str, description: str) -> Callable[[Callable[..., Dataset]], Callable[..., Dataset]]:
    def wrap(factory: Callable[..., Dataset]) -> Callable[..., Dataset]:
        if name in _REGISTRY:
            raise ValueError(f"dataset {name!r} is already registered")
        _REGISTRY[name] = DatasetEntry(name, factory, description)
        return factory

    return wrap


def available() -> list[str]:
    return sorted(_REGISTRY)


def describe() -> dict[str, str]:
    return {name: _REGISTRY[name].description for name in available()}


def entry(name: str) -> DatasetEntry:
    if name not in _REGISTRY:
        raise UserError(unknown_name_message("dataset", name, available()))
    return _REGISTRY[name]


def create(name: str, split: str, resolution: int, root: str | None = None, **options: Any) -> Dataset:
    """The `split` ("train" or "val") of dataset `name` as uint8 (3, resolution, resolution) tensors."""
    e = entry(name)
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if int(resolution) < 8:
        raise UserError(f"resolution must be at least 8 pixels, got {resolution}")
    accepted = inspect.signature(e.factory).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        for key in options:
            if key not in accepted:
                raise UserError(f"dataset {name!r} has no option {key!r}")
    return e.factory(split=split, resolution=int(resolution), root=root, **options)
