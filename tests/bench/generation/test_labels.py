"""The label protocol of datasets (labels, label_names) and imagefolder's subfolder classes."""
from pathlib import Path

import numpy as np
from PIL import Image

import datasets


def _img(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


def test_train_val_subfolders_give_one_class_index_in_both_splits(tmp_path):
    for split in ("train", "val"):
        _img(tmp_path / split / "dog" / "a.png", 10)
        _img(tmp_path / split / "cat" / "b.png", 20)
    _img(tmp_path / "train" / "emu" / "c.png", 30)  # a class only the training split has
    train = datasets.create(f"imagefolder:{tmp_path}", "train", 8)
    val = datasets.create(f"imagefolder:{tmp_path}", "val", 8)
    assert train.label_names == val.label_names == ["cat", "dog", "emu"]
    assert [train.label_names[i] for i in train.labels] == [n.split("/")[0] for n in train.names]
    assert [val.label_names[i] for i in val.labels] == ["cat", "dog"]


def test_hash_split_labels_and_loose_images_mean_no_labels(tmp_path):
    for i in range(30):
        _img(tmp_path / "a" / ("x%02d.png" % i), 10)
        _img(tmp_path / "b" / ("y%02d.png" % i), 20)
    ds = datasets.create(f"imagefolder:{tmp_path}", "train", 8)
    assert ds.label_names == ["a", "b"] and sorted(set(ds.labels)) == [0, 1]
    _img(tmp_path / "loose.png", 5)  # one image outside any subfolder: no labels for the split holding it
    splits = [datasets.create(f"imagefolder:{tmp_path}", s, 8) for s in ("train", "val")]
    holder = next(d for d in splits if "loose.png" in d.names)
    assert holder.labels is None and holder.label_names is None


def test_datasets_without_labels_say_none():
    import torch

    ds = datasets.UInt8Images(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), ["a", "b"], {})
    assert ds.labels is None and ds.label_names is None
