"""Datasets, one loader per file, registered by name. Each gives uint8 (3, R, R) image tensors.

    import datasets
    datasets.available()                          # ['photos', ...]
    ds = datasets.create("photos", "val", 32)     # torch Dataset of uint8 CHW images

This package shares its name with Hugging Face `datasets`: the project runs from its checkout and is
never installed into site-packages.
"""
from .files import DATA_ENV, DEFAULT_DATA_ROOT, BadImageError, ImageFiles, data_root
from .registry import SPLITS, available, canonical_name, check_options, create, describe, entry, locate, register_dataset
from .tensor_dataset import UInt8Images

# One import line per dataset file: importing registers it.
from . import photos  # noqa: E402,F401
from . import ade20k, celebahq, cub200, ffhq, imagefolder, imagenet, mscoco  # noqa: E402,F401
from . import webdataset  # noqa: E402,F401
from . import parquet  # noqa: E402,F401

__all__ = ["DATA_ENV", "DEFAULT_DATA_ROOT", "SPLITS", "BadImageError", "ImageFiles", "UInt8Images", "available",
           "canonical_name", "check_options", "create", "data_root", "describe", "entry", "locate", "register_dataset"]
