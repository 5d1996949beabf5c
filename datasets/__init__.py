"""Datasets, one loader per file, registered by name. Each gives uint8 (3, R, R) image tensors.

    import datasets
    datasets.available()                          # ['photos', ...]
    ds = datasets.create("photos", "val", 32)     # torch Dataset of uint8 CHW images

This package shares its name with Hugging Face `datasets`: the project runs from its checkout and is
never installed into site-packages.
"""
from .registry import SPLITS, available, create, describe, entry, register_dataset
from .tensor_dataset import UInt8Images

# One import line per dataset file: importing registers it.
from . import photos  # noqa: E402,F401

__all__ = ["SPLITS", "UInt8Images", "available", "create", "describe", "entry", "register_dataset"]
