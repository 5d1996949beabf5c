"""Every folder dataset, on a fake tree in its real layout: discovery (data root and --dataset-path),
split sizes, no overlap, output shape and dtype, canonical names, and the bad-input messages."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import datasets
from bench.core.errors import UserError
from datasets import ade20k, celebahq, cub200, ffhq, imagenet, mscoco

from .fake_trees import BUILDERS, dataset_name, write_image

R = 16
KINDS = sorted(BUILDERS)


@pytest.fixture(params=KINDS)
def tree(request, tmp_path):
    kind = request.param
    folder, paths = BUILDERS[kind][1](tmp_path)
    return kind, folder, paths, tmp_path


def test_every_registered_folder_dataset_has_a_fake_tree():
    sharded = {"webdataset", "parquet"}  # read from shards, not folders: tests/datasets/test_shards.py
    on_disk = {n for n in set(datasets.available()) - sharded
               if datasets.entry(n if n != "imagefolder" else "imagefolder:x").reads_files}
    assert on_disk == {b[0] for b in BUILDERS.values()}


def test_discovery_sizes_overlap_shape(tree):
    kind, folder, paths, root = tree
    name = dataset_name(kind, folder)
    # through the data root (folder names the loader looks for) unless it is an imagefolder
    kwargs = {} if name.startswith("imagefolder") else {"root": str(root)}
    sets = {s: datasets.create(name, s, R, **kwargs) for s in ("train", "val")}
    for split, ds in sets.items():
        assert len(ds) == len(paths[split]) > 0, (split, ds.names)
        assert sorted(ds.paths) == sorted(str(p) for p in paths[split])
        assert ds.names == sorted(ds.names) and len(set(ds.names)) == len(ds)
        for i in range(len(ds)):
            x = ds[i]
            assert x.dtype == torch.uint8 and x.shape == (3, R, R)
        p = ds.protocol
        assert p["dataset"] == datasets.canonical_name(name) and p["split"] == split and p["n_images"] == len(ds)
        assert "preprocessing" in p and p["layout"] and p["split_rule"]
    assert not set(sets["train"].paths) & set(sets["val"].paths)
    assert not set(sets["train"].names) & set(sets["val"].names)
    # the same through --dataset-path
    direct = datasets.create(name, "val", R, path=str(folder))
    assert direct.paths == sets["val"].paths


@pytest.mark.parametrize("kind", ["ade20k-challenge", "ade20k-full"])
def test_ade20k_alias_is_recorded_canonically(kind, tmp_path):
    folder, paths = BUILDERS[kind][1](tmp_path)
    ds = datasets.create("adeg20k", "val", R, path=str(folder))
    assert ds.protocol["dataset"] == "ade20k" and len(ds) == len(paths["val"])
    assert datasets.canonical_name("adeg20k") == "ade20k"
    assert datasets.create("ade20k", "val", R, path=str(folder)).paths == ds.paths


def test_ade20k_found_directly_under_its_release_name(tmp_path):
    ade20k_full = BUILDERS["ade20k-full"][1]
    ade20k_full(tmp_path)  # <root>/ADE20K_2021_17_01
    assert len(datasets.create("ade20k", "train", R, root=str(tmp_path))) == 3


def test_imagefolder_name_and_relative_path(tmp_path, monkeypatch):
    folder, _ = BUILDERS["imagefolder-split"][1](tmp_path)
    monkeypatch.chdir(tmp_path)
    assert datasets.canonical_name("imagefolder:pics") == f"imagefolder:{folder}"
    assert datasets.create("imagefolder:pics", "val", R).protocol["dataset"] == f"imagefolder:{folder}"
    with pytest.raises(UserError, match=r"imagefolder:PATH"):
        datasets.create("imagefolder", "val", R)
    with pytest.raises(UserError, match=r"takes no ':PATH'"):
        datasets.create("ffhq:/x", "val", R)


def test_imagefolder_hash_split_fraction(tmp_path):
    folder, paths = BUILDERS["imagefolder-hash"][1](tmp_path)
    big = datasets.create(f"imagefolder:{folder}", "val", R, val_fraction=0.5)
    assert len(big) > len(paths["val"])
    assert big.protocol["split_rule"].endswith("< 0.5")


def test_imagefolder_hash_split_can_leave_val_empty(tmp_path):
    write_image(tmp_path / "one" / "a.png")
    with pytest.raises(UserError, match=r"hash split leaves (val|train) empty \(1 image"):
        for s in ("train", "val"):
            datasets.create(f"imagefolder:{tmp_path / 'one'}", s, R)


def test_ffhq_prefers_1024_over_thumbnails_and_records_it(tmp_path):
    ffhq_tree = BUILDERS["ffhq-1024"][1]
    ffhq_tree(tmp_path)
    BUILDERS["ffhq-thumbs"][1](tmp_path)
    assert datasets.create("ffhq", "val", R, root=str(tmp_path)).protocol["layout"] == "images1024x1024"
    thumbs = datasets.create("ffhq", "val", R, root=str(tmp_path), variant="thumbnails128x128")
    assert thumbs.protocol["layout"] == "thumbnails128x128" and "thumbnails128x128" in thumbs.paths[0]
    assert thumbs.names == ["60000.png", "69999.png"]


def test_mscoco_year_choice(tmp_path):
    BUILDERS["mscoco-2017"][1](tmp_path)
    BUILDERS["mscoco-2014"][1](tmp_path)
    assert datasets.create("mscoco", "val", R, root=str(tmp_path)).protocol["year"] == 2017
    old = datasets.create("mscoco", "val", R, root=str(tmp_path), year=2014)
    assert old.protocol["year"] == 2014 and old.names[0].startswith("COCO_val2014_")
    with pytest.raises(UserError, match="year must be"):
        datasets.create("mscoco", "val", R, root=str(tmp_path), year=2012)


def test_imagenet_val_names_do_not_depend_on_layout(tmp_path):
    flat, _ = BUILDERS["imagenet-flatval"][1](tmp_path / "a")
    per_class, _ = BUILDERS["imagenet-classval"][1](tmp_path / "b")
    a = datasets.create("imagenet", "val", R, path=str(flat), limit_val=2)
    b = datasets.create("imagenet", "val", R, path=str(per_class), limit_val=2)
    assert a.names == b.names == ["ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG"]
    assert b.protocol["layout"] == "val/<wnid>/" and a.protocol["layout"] == "val/ flat"


def test_limit_val_is_first_n_by_sorted_name_and_recorded(tmp_path):
    folder, paths = BUILDERS["celebahq-splitfiles"][1](tmp_path)
    ds = datasets.create("celebahq", "val", R, path=str(folder), limit_val=3)
    assert ds.names == sorted(p.name for p in paths["val"])[:3]
    assert ds.protocol["limit_val"] == 3 and ds.protocol["split_size"] == 4 and ds.protocol["n_images"] == 3
    assert len(datasets.create("celebahq", "train", R, path=str(folder), limit_val=3)) == 20  # val only
    photos = datasets.create("photos", "val", 32, limit_val=5)
    assert len(photos) == 5 and photos.names == sorted(photos.names) and photos.protocol["limit_val"] == 5
    with pytest.raises(UserError, match="limit_val must be a positive integer"):
        datasets.create("celebahq", "val", R, path=str(folder), limit_val=0)


def test_data_root_order(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(datasets.DATA_ENV, raising=False)
    assert datasets.data_root() == (tmp_path / "home" / "data", "default ~/data")
    BUILDERS["mscoco-2017"][1](tmp_path / "home" / "data")
    assert len(datasets.create("mscoco", "val", R)) == 2  # default root
    BUILDERS["imagenet-flatval"][1](tmp_path / "env")
    monkeypatch.setenv(datasets.DATA_ENV, str(tmp_path / "env"))
    assert datasets.data_root()[1] == f"${datasets.DATA_ENV}"
    assert len(datasets.create("imagenet", "val", R)) == 3  # $VQBENCH_DATA beats the default
    with pytest.raises(UserError, match=r"dataset 'mscoco': tried .*env/mscoco \(no such folder\)"):
        datasets.create("mscoco", "val", R)
    assert len(datasets.create("mscoco", "val", R, root=str(tmp_path / "home" / "data"))) == 2  # --data-root wins


# ------------------------------------------------------------------------------------ bad input
LAYOUT_OF = {"ffhq": ffhq.LAYOUT, "ade20k": ade20k.LAYOUT, "celebahq": celebahq.LAYOUT, "cub200": cub200.LAYOUT,
             "mscoco": mscoco.LAYOUT, "imagenet": imagenet.LAYOUT}


@pytest.mark.parametrize("name", sorted(LAYOUT_OF))
def test_missing_and_empty_folder_is_one_line(name, tmp_path):
    with pytest.raises(UserError) as e:
        datasets.create(name, "train", R, root=str(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg and f"dataset {name!r}" in msg and str(tmp_path / datasets.entry(name).name) in msg
    assert "no such folder" in msg and LAYOUT_OF[name] in msg and "--dataset-path" in msg
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError) as e:
        datasets.create(name, "val", R, path=str(empty))
    msg = str(e.value)
    assert "\n" not in msg and f"{empty} (empty)" in msg and LAYOUT_OF[name] in msg
    # a folder with something else in it
    (empty / "readme.txt").write_text("x")
    with pytest.raises(UserError, match=r"no images in the expected layout"):
        datasets.locate(name, path=str(empty))


def test_imagefolder_missing_and_empty(tmp_path):
    with pytest.raises(UserError, match=r"^dataset 'imagefolder:.*nope': tried .*nope \(no such folder\); expected a folder"):
        datasets.create(f"imagefolder:{tmp_path / 'nope'}", "train", R)
    with pytest.raises(UserError, match=r"\(empty\)"):
        datasets.create(f"imagefolder:{tmp_path}", "train", R)


def test_ffhq_split_files_naming_missing_images(tmp_path):
    folder, paths = BUILDERS["ffhq-flat-splitfiles"][1](tmp_path)
    for p in paths["train"][:3]:
        p.unlink()
    with pytest.raises(UserError) as e:
        datasets.create("ffhq", "train", R, path=str(folder))
    msg = str(e.value)
    assert "ffhqtrain.txt names 3 image(s) missing" in msg and "00000.png" in msg and "\n" not in msg


def test_celebahq_split_files_naming_missing_images(tmp_path):
    folder, paths = BUILDERS["celebahq-splitfiles"][1](tmp_path)
    for p in paths["val"]:
        p.unlink()
    with pytest.raises(UserError, match=r"celebahqvalidation.txt names 4 image\(s\) missing .*first: imgHQ00020.npy"):
        datasets.create("celebahq", "val", R, path=str(folder))
    (tmp_path / "celebahqvalidation.txt").unlink()
    with pytest.raises(UserError, match="found only one of"):
        datasets.create("celebahq", "val", R, path=str(folder))


def test_cub_missing_images_many_listed_first_few(tmp_path):
    base, paths = BUILDERS["cub200"][1](tmp_path)
    for p in paths["train"] + paths["val"]:
        p.unlink()
    with pytest.raises(UserError) as e:
        datasets.create("cub200", "train", R, root=str(tmp_path))
    msg = str(e.value)
    assert "images.txt names 6 image(s) missing" in msg and msg.endswith(", ...)") and msg.count(".jpg") == 5


def test_cub_train_and_test_never_overlap(tmp_path):
    base, _ = BUILDERS["cub200"][1](tmp_path)
    tr = datasets.create("cub200", "train", R, path=str(base))
    te = datasets.create("cub200", "val", R, path=str(base))
    assert (len(tr), len(te)) == (4, 2) and not set(tr.names) & set(te.names)
    # one file listed under a train id and a test id (the public VQCT code used one list for both)
    lines = (base / "images.txt").read_text().splitlines()
    lines[1] = lines[1].split()[0] + " " + lines[0].split()[1]
    (base / "images.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"train and val overlap in 1 image"):
        datasets.create("cub200", "train", R, path=str(base))


def test_cub_split_file_problems(tmp_path):
    base, _ = BUILDERS["cub200"][1](tmp_path)
    (base / "train_test_split.txt").write_text("1 0\n2 1\n3 0\n4 1\n5 1\n")
    with pytest.raises(UserError, match=r"1 id\(s\) without a split \(first: 6\)"):
        datasets.create("cub200", "train", R, path=str(base))
    (base / "train_test_split.txt").unlink()
    with pytest.raises(UserError, match=r"train_test_split.txt is missing"):
        datasets.create("cub200", "train", R, path=str(base))


def test_unknown_option_and_path_for_embedded(tmp_path):
    folder, _ = BUILDERS["mscoco-2017"][1](tmp_path)
    with pytest.raises(UserError, match=r"dataset 'mscoco' has no option 'crop'"):
        datasets.create("mscoco", "val", R, path=str(folder), crop="center")
    with pytest.raises(UserError, match="hflip must be True or False, got 'no'"):
        datasets.create("mscoco", "train", R, path=str(folder), hflip="no")
    with pytest.raises(UserError, match="train_crop must be one of random, center"):
        datasets.create("mscoco", "train", R, path=str(folder), train_crop="middle")
    with pytest.raises(UserError, match="resize_filter must be one of"):
        datasets.create("mscoco", "train", R, path=str(folder), resize_filter="nearest")
    with pytest.raises(UserError, match="embedded and reads no folder"):
        datasets.create("photos", "val", 32, path=str(folder))
    with pytest.raises(UserError, match=r"unknown dataset 'adek20k'.*did you mean"):
        datasets.create("adek20k", "val", R)


def test_symlinked_folders_are_followed(tmp_path):
    folder, paths = BUILDERS["imagefolder-split"][1](tmp_path / "real")
    os.symlink(folder / "val", tmp_path / "real" / "pics" / "train" / "linked")
    ds = datasets.create(f"imagefolder:{folder}", "train", R)
    assert len(ds) == len(paths["train"]) + len(paths["val"])
    assert Path(ds.paths[0]).is_file()
