"""The embedded default dataset: deterministic, uint8, train and val never overlap."""
import pytest
import torch

import datasets
from bench.core.errors import UserError


@pytest.fixture(scope="module")
def splits():
    return {s: datasets.create("photos", s, 32) for s in ("train", "val")}


def test_shapes_and_dtype(splits):
    for ds in splits.values():
        x = ds[0]
        assert x.dtype == torch.uint8 and x.shape == (3, 32, 32)
    assert len(splits["train"]) > 1000 and len(splits["val"]) > 100


def test_train_and_val_share_no_tile(splits):
    assert not set(splits["train"].names) & set(splits["val"].names)
    # Tiles are cut on one grid per photo, so distinct names mean disjoint pixels.
    assert len(set(splits["val"].names)) == len(splits["val"])


def test_deterministic():
    a = datasets.create("photos", "val", 32)
    b = datasets.create("photos", "val", 32)
    assert a.names == b.names and torch.equal(a.images, b.images)


def test_other_resolutions():
    ds = datasets.create("photos", "val", 64)
    assert ds[0].shape == (3, 64, 64)


def test_unknown_dataset_and_split():
    with pytest.raises(UserError, match=r"unknown dataset 'foto'.*did you mean 'photos'"):
        datasets.create("foto", "train", 32)
    with pytest.raises(UserError, match="unknown split"):
        datasets.create("photos", "test", 32)
