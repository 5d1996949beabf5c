"""Unreadable, truncated and small images on every dataset; the decoded cache gives the uncached
tensors exactly; counts made in DataLoader workers reach the record."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch.utils.data import DataLoader

import datasets
from bench.core.errors import UserError
from datasets import cache as dcache

from .fake_trees import BUILDERS, dataset_name, write_image

R = 16
KINDS = sorted(BUILDERS)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VQBENCH_CACHE", str(tmp_path / "cache"))


def _split_with_two(paths):
    return "val" if len(paths["val"]) >= 2 else "train"


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("kind", KINDS)
def test_truncated_image_error_then_skip(kind, tmp_path):
    folder, paths = BUILDERS[kind][1](tmp_path)
    name = dataset_name(kind, folder)
    split = _split_with_two(paths)
    bad = sorted(paths[split])[0]
    _truncate(bad)
    ds = datasets.create(name, split, R, path=str(folder))
    with pytest.raises(datasets.BadImageError) as e:
        [ds[i] for i in range(len(ds))]
    msg = str(e.value)
    assert str(bad) in msg and "--skip-bad-images" in msg and "\n" not in msg and isinstance(e.value, UserError)
    ds = datasets.create(name, split, R, path=str(folder), skip_bad_images=True)
    k = ds.paths.index(str(bad))
    items = [ds[i] for i in range(len(ds))]
    assert torch.equal(items[k], items[(k + 1) % len(ds)])  # the slot is served by the next readable image
    s = ds.stats()
    assert s["bad_images_skipped"] == 1 and s["bad_image_examples"] == [ds.names[k]] and s["images_read"] == len(ds)
    assert ds.protocol["bad_images_skipped"] == 1


@pytest.mark.parametrize("kind", KINDS)
def test_small_image_upscaled_with_warning_and_counted(kind, tmp_path):
    folder, paths = BUILDERS[kind][1](tmp_path)
    split = _split_with_two(paths)
    small = sorted(paths[split])[-1]
    write_image(small, size=(12, 9))
    ds = datasets.create(dataset_name(kind, folder), split, R, path=str(folder))
    datasets.files._warned.clear()
    with pytest.warns(UserWarning, match="smaller than 16 px and was upscaled"):
        items = [ds[i] for i in range(len(ds))]
    assert all(x.shape == (3, R, R) for x in items)
    assert ds.stats()["upscaled_images"] == 1 and ds.stats()["upscaled_examples"] == [ds.names[ds.paths.index(str(small))]]


def test_garbage_file_and_all_bad(tmp_path):
    folder = tmp_path / "pics"
    for k in range(3):
        (folder / "train").mkdir(parents=True, exist_ok=True)
        (folder / "train" / f"{k}.jpg").write_bytes(b"not a jpeg at all")
    write_image(folder / "val" / "v.png")
    ds = datasets.create(f"imagefolder:{folder}", "train", R)
    with pytest.raises(datasets.BadImageError, match=r"cannot read image .*0\.jpg \(UnidentifiedImageError"):
        ds[0]
    ds = datasets.create(f"imagefolder:{folder}", "train", R, skip_bad_images=True)
    with pytest.raises(datasets.BadImageError, match="none of its 3 images can be read"):
        ds[0]


def test_counts_from_dataloader_workers_reach_the_parent(tmp_path):
    folder, paths = BUILDERS["imagefolder-hash"][1](tmp_path)
    train = sorted(paths["train"])
    _truncate(train[0])
    write_image(train[1], size=(10, 10))
    ds = datasets.create(f"imagefolder:{folder}", "train", R, skip_bad_images=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batches = list(DataLoader(ds, batch_size=4, num_workers=2))
    assert sum(len(b) for b in batches) == len(ds)
    s = ds.stats()
    assert (s["bad_images_skipped"], s["upscaled_images"], s["images_read"]) == (1, 1, len(ds))


def test_a_worker_error_stays_one_line(tmp_path):
    folder, paths = BUILDERS["imagefolder-split"][1](tmp_path)
    bad = sorted(paths["train"])[0]
    _truncate(bad)
    ds = datasets.create(f"imagefolder:{folder}", "train", R)
    with pytest.raises(datasets.BadImageError) as e:
        list(DataLoader(ds, batch_size=2, num_workers=1))
    assert str(e.value).startswith("dataset 'imagefolder:") and str(bad) in str(e.value) and "\n" not in str(e.value)


# ------------------------------------------------------------------------------------ cache
@pytest.mark.parametrize("kind", KINDS)
def test_cache_gives_identical_tensors(kind, tmp_path):
    folder, _ = BUILDERS[kind][1](tmp_path)
    name = dataset_name(kind, folder)
    for split in ("train", "val"):
        plain = datasets.create(name, split, R, path=str(folder), seed=2)
        cached = datasets.create(name, split, R, path=str(folder), seed=2, cache=True, cache_workers=0)
        assert isinstance(cached, dcache.CachedImages) and cached.names == plain.names
        for e in range(3):
            for i in range(len(plain)):
                assert torch.equal(plain[(i, e)], cached[(i, e)]), (split, i, e)
        assert "decoded_cache" in cached.protocol


def test_cache_built_once_keyed_by_preprocessing(tmp_path, monkeypatch):
    folder, _ = BUILDERS["imagefolder-hash"][1](tmp_path)
    name = f"imagefolder:{folder}"
    a = datasets.create(name, "train", R, cache=True, cache_workers=2)
    built = []
    real_build = dcache.build
    monkeypatch.setattr(dcache, "build", lambda *args, **kw: built.append(1) or real_build(*args, **kw))
    b = datasets.create(name, "train", R, cache=True)
    assert b.folder == a.folder and built == []  # read, not rebuilt
    assert datasets.create(name, "train", R, seed=5, cache=True).folder == a.folder  # the seed only moves crops
    others = {datasets.create(name, "train", 24, cache=True).folder,
              datasets.create(name, "train", R, resize_filter="lanczos", cache=True).folder,
              datasets.create(name, "train", R, train_crop="center", cache=True).folder,
              datasets.create(name, "val", R, cache=True).folder}
    assert len(others) == 4 and a.folder not in others and len(built) == 4
    split_tree, _ = BUILDERS["imagefolder-split"][1](tmp_path / "b")  # 2 val images
    one = datasets.create(f"imagefolder:{split_tree}", "val", R, limit_val=1, cache=True)
    assert len(one) == 1 and one.folder != datasets.create(f"imagefolder:{split_tree}", "val", R, cache=True).folder


def test_cache_with_bad_and_small_images(tmp_path):
    folder, paths = BUILDERS["imagefolder-hash"][1](tmp_path)
    train = sorted(paths["train"])
    _truncate(train[2])
    write_image(train[3], size=(10, 12))
    name = f"imagefolder:{folder}"
    with pytest.raises(datasets.BadImageError, match=str(train[2])):
        datasets.create(name, "train", R, cache=True, cache_workers=0)
    assert not any(p.name.endswith(".tmp") or ".tmp-" in p.name for p in (tmp_path / "cache" / "datasets").iterdir())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = datasets.create(name, "train", R, skip_bad_images=True)
        cached = datasets.create(name, "train", R, skip_bad_images=True, cache=True, cache_workers=0)
        for i in range(len(plain)):
            assert torch.equal(plain[(i, 1)], cached[(i, 1)])
    assert plain.stats() == cached.stats()
    assert cached.stats()["bad_images_skipped"] == 1 and cached.stats()["upscaled_images"] == 1
    # a cache built while skipping still refuses the bad file when the run does not skip
    strict = datasets.create(name, "train", R, cache=True)
    with pytest.raises(datasets.BadImageError, match="--skip-bad-images"):
        [strict[i] for i in range(len(strict))]


def test_cached_dataset_in_workers(tmp_path):
    folder, _ = BUILDERS["imagefolder-hash"][1](tmp_path)
    name = f"imagefolder:{folder}"
    plain = datasets.create(name, "train", R)
    cached = datasets.create(name, "train", R, cache=True, cache_workers=0)
    a = torch.cat(list(DataLoader(plain, batch_size=5)))
    b = torch.cat(list(DataLoader(cached, batch_size=5, num_workers=2)))
    assert torch.equal(a, b) and cached.stats()["images_read"] == len(cached)
