"""webdataset:PATTERN and parquet:PATH: shard patterns, the three split rules, labels, the cached
index, bad members (an error naming the shard and member, or skipped and counted), bad shards (one
line), DataLoader workers, and the same tensors as an image folder of the same files."""
from __future__ import annotations

import gzip

import pytest
import torch
from torch.utils.data import DataLoader

import datasets
from bench.core.errors import UserError
from datasets import parquet as dparquet
from datasets import shards
from datasets import webdataset as dwebdataset

from .shard_trees import image_bytes, names, three_sources, write_folder, write_parquet, write_tar, write_tars

R = 16


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VQBENCH_CACHE", str(tmp_path / "cache"))


def _images(n: int = 12) -> dict[str, bytes]:
    return {name: image_bytes(name) for name in names(n)}


def _all(ds) -> torch.Tensor:
    return torch.stack([ds[(i, 1)] for i in range(len(ds))])


def test_expand_ranges_choices_and_globs(tmp_path):
    assert shards.expand("/d/train-{000..002}.tar") == ["/d/train-000.tar", "/d/train-001.tar", "/d/train-002.tar"]
    assert shards.expand("/d/{a,b}-{8..10}.tar") == ["/d/a-8.tar", "/d/a-9.tar", "/d/a-10.tar",
                                                       "/d/b-8.tar", "/d/b-9.tar", "/d/b-10.tar"]
    for k in (2, 0, 1):
        (tmp_path / f"s{k}.tar").write_bytes(b"")
    assert shards.expand(str(tmp_path / "s*.tar")) == [str(tmp_path / f"s{k}.tar") for k in range(3)]
    assert dwebdataset.split_key("n01/x.seg.PNG") == ("n01/x", "seg.png")


def test_same_tensors_as_the_folder_in_both_splits_and_with_workers(tmp_path):
    sources = three_sources(tmp_path, n=24)
    for split in ("train", "val"):
        folder = datasets.create(sources["imagefolder"], split, R, seed=3)
        want = _all(folder)
        for source in ("webdataset", "parquet"):
            ds = datasets.create(sources[source], split, R, seed=3)
            assert ds.names == folder.names and torch.equal(_all(ds), want), (source, split)
    tar = datasets.create(sources["webdataset"], "train", R)
    served = torch.cat(list(DataLoader(tar, batch_size=5, num_workers=2)))
    assert torch.equal(served, torch.stack([tar[i] for i in range(len(tar))]))
    assert tar.stats()["images_read"] == len(tar)  # counted in the workers, seen in the parent


def test_split_placeholder_and_val_pattern(tmp_path):
    images = _images(10)
    train, val = dict(list(images.items())[:7]), dict(list(images.items())[7:])
    write_tars(tmp_path / "t", train, shards=2, prefix="train")
    write_tars(tmp_path / "t", val, shards=1, prefix="val")
    by_field = f"webdataset:{tmp_path}/t/{{split}}-*.tar"
    assert len(datasets.create(by_field, "train", R)) == 7 and len(datasets.create(by_field, "val", R)) == 3
    assert datasets.create(by_field, "val", R).protocol["split_rule"].startswith("train shards")
    by_option = f"webdataset:{tmp_path}/t/train-{{0..1}}.tar"
    v = datasets.create(by_option, "val", R, val_pattern=str(tmp_path / "t" / "val-0.tar"))
    assert v.names == sorted(val) and v.protocol["val_fraction"] is None
    with pytest.raises(UserError, match="not both"):
        datasets.create(by_field, "val", R, val_pattern=str(tmp_path / "t" / "val-0.tar"))
    write_parquet(tmp_path / "p" / "train-00000-of-00001.parquet", train)
    write_parquet(tmp_path / "p" / "val-00000-of-00001.parquet", val)
    assert datasets.create(f"parquet:{tmp_path}/p/{{split}}-*.parquet", "val", R).names == sorted(val)
    folder = f"parquet:{tmp_path}/p"  # a folder: every .parquet in it, hash split
    both = datasets.create(folder, "train", R).names + datasets.create(folder, "val", R).names
    assert sorted(both) == sorted(images)


def test_labels_from_cls_members_and_parquet_class_names(tmp_path):
    images = _images(12)
    labels = {n: k % 3 for k, n in enumerate(images)}
    write_tars(tmp_path / "t", images, labels=labels)
    ds = datasets.create(f"webdataset:{tmp_path}/t", "train", R, val_fraction=0.3)
    assert ds.label_names == ["0", "1", "2"] and ds.labels == [labels[n] for n in ds.names]
    write_parquet(tmp_path / "p.parquet", images, labels=labels, class_names=["cat", "dog", "owl"])
    pq = datasets.create(f"parquet:{tmp_path}/p.parquet", "val", R, val_fraction=0.3, cache=True, cache_workers=0)
    assert pq.label_names == ["cat", "dog", "owl"] and pq.labels == [labels[n] for n in pq.names]
    write_tars(tmp_path / "u", images)  # no .cls: unlabelled
    assert datasets.create(f"webdataset:{tmp_path}/u", "train", R).labels is None
    # WebDataset fields: only KEY.<image type> is an image (not a KEY.seg.png mask); `./` is dropped
    write_tar(tmp_path / "f" / "0.tar", {"./a.png": image_bytes("a.png"), "./a.seg.png": b"x", "./a.json": b"{}",
                                         "./b.jpg": image_bytes("b.jpg", fmt="JPEG")})
    both = [datasets.create(f"webdataset:{tmp_path}/f", s, R, val_fraction=0.5).names for s in ("train", "val")]
    assert sorted(both[0] + both[1]) == ["a.png", "b.jpg"]
    write_tar(tmp_path / "bad" / "0.tar", {"a.png": image_bytes("a.png"), "a.cls": b"cat"})
    with pytest.raises(UserError, match="not an integer class"):
        datasets.create(f"webdataset:{tmp_path}/bad", "train", R, val_fraction=0.01)


def test_index_is_built_once_and_again_for_a_rewritten_shard(tmp_path, monkeypatch):
    images = _images(8)
    (shard,) = write_tars(tmp_path, images, shards=1)
    name = f"webdataset:{shard}"
    calls = []
    real = dwebdataset.index_tar
    monkeypatch.setattr(dwebdataset, "SOURCE", shards.Source(**{**dwebdataset.SOURCE.__dict__,
                                                               "index": lambda d, s: calls.append(s) or real(d, s)}))
    datasets.create(name, "train", R, val_fraction=0.3)
    datasets.create(name, "val", R, val_fraction=0.3)
    assert len(calls) == 1
    more = {**images, **_images(10)}
    write_tars(tmp_path, more, shards=1)
    assert len(datasets.create(name, "train", R, val_fraction=0.3)) + len(datasets.create(name, "val", R, val_fraction=0.3)) == 10
    assert len(calls) == 2


def test_corrupt_member_fails_naming_it_or_is_skipped(tmp_path):
    images = _images(8)
    broken = sorted(images)[2]
    images[broken] = images[broken][: len(images[broken]) // 2]
    write_tars(tmp_path / "t", images)
    write_parquet(tmp_path / "p.parquet", {**images, sorted(images)[3]: None})
    for name, bad in ((f"webdataset:{tmp_path}/t/shard-{{0..1}}.tar", [broken]),
                      (f"parquet:{tmp_path}/p.parquet", [broken, sorted(images)[3]])):
        ds = datasets.create(name, "train", R, val_fraction=0.01)
        assert len(ds) == 8
        with pytest.raises(datasets.BadImageError) as e:
            [ds[i] for i in range(len(ds))]
        msg = str(e.value)
        assert f":{broken} (" in msg and "--skip-bad-images" in msg and "\n" not in msg
        for cache in (False, True):
            ds = datasets.create(name, "train", R, val_fraction=0.01, skip_bad_images=True, cache=cache, cache_workers=0)
            k = ds.names.index(broken)
            items = [ds[i] for i in range(len(ds))]
            assert torch.equal(items[k], items[k + 1 + (len(bad) - 1)])  # served by the next readable image
            s = ds.stats()
            assert s["bad_images_skipped"] == len(bad) and s["bad_image_examples"] == bad
    pq = datasets.create(f"parquet:{tmp_path}/p.parquet", "train", R, val_fraction=0.01)
    with pytest.raises(datasets.BadImageError, match="holds no image bytes"):
        pq[3]


def test_truncated_shard_names_the_member(tmp_path):
    images = _images(4)
    (shard,) = write_tars(tmp_path, images, shards=1)
    last = max(images)
    ix = dwebdataset.index_tar("x", shard)
    end = ix.a[ix.names.index(last)] + 10
    ds = datasets.create(f"webdataset:{shard}", "train", R, val_fraction=0.01)  # indexed while whole
    shard.write_bytes(shard.read_bytes()[:end])
    with pytest.raises(datasets.BadImageError, match=rf"{last} \(OSError: the shard is truncated: 10 of"):
        ds[len(ds) - 1]


def test_bad_shards_are_one_line_user_errors(tmp_path):
    plain = write_tar(tmp_path / "plain.tar", {"a.png": image_bytes("a.png")})
    gz = tmp_path / "gz" / "0.tar"
    gz.parent.mkdir()
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "0.tar").write_bytes(b"\x00garbage" * 10)
    cases = [(f"webdataset:{gz}", "it is compressed"), (f"webdataset:{tmp_path / 'junk'}", "cannot read shard"),
             (f"webdataset:{tmp_path}/none-{{0..3}}.tar", "no shard matches"),
             (f"webdataset:{tmp_path / 'gz'}/{{split}}.tar", "no shard matches")]
    write_folder(tmp_path / "folder", {"a.png": image_bytes("a.png")})
    cases.append((f"webdataset:{tmp_path / 'folder'}", "no .tar files"))
    dup = tmp_path / "dup"
    write_tar(dup / "0.tar", {"a.png": image_bytes("a.png")})
    write_tar(dup / "1.tar", {"a.png": image_bytes("a.png")})
    for name, expected in cases:
        with pytest.raises(UserError) as e:
            datasets.locate(name)
        assert expected in str(e.value) and "\n" not in str(e.value), (name, str(e.value))
    with pytest.raises(UserError, match="appear twice"):
        datasets.create(f"webdataset:{dup}", "train", R, val_fraction=0.01)
    with pytest.raises(UserError, match="leaves val empty"):
        datasets.create(f"webdataset:{plain}", "val", R, val_fraction=0.01)


def test_parquet_columns(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    blobs = [image_bytes(n) for n in names(6)]
    pq.write_table(pa.table({"pixels": blobs, "thumb": blobs, "y": list(range(6))}), tmp_path / "raw.parquet")
    name = f"parquet:{tmp_path / 'raw.parquet'}"
    with pytest.raises(UserError, match="several image column.*image_column=NAME"):
        datasets.create(name, "train", R)
    ds = datasets.create(name, "train", R, image_column="pixels", label_column="y", val_fraction=0.01)
    assert ds.names == [f"raw/{k:08d}" for k in range(6)]  # no paths: row numbers
    assert ds.labels == list(range(6)) and ds[0].shape == (3, R, R)
    with pytest.raises(UserError, match="no integer label column 'z'"):
        datasets.create(name, "train", R, image_column="pixels", label_column="z")
    assert dparquet.image_column("x", tmp_path, pq.ParquetFile(tmp_path / "raw.parquet").schema_arrow, "thumb") == "thumb"
