"""Preprocessing recipes of published configurations (`recipe=vqct`): each dataset's official
resize, crop and flip, recorded in the protocol; an unknown recipe is a one-line error."""
import numpy as np
import pytest
import torch
from PIL import Image

import datasets
from bench.core.errors import UserError

from .fake_trees import ade20k_challenge, cub200, mscoco

R = 16


def test_ade20k_vqct_resizes_to_a_square_without_crop_or_flip(tmp_path):
    folder, paths = ade20k_challenge(tmp_path)
    ds = datasets.create("ade20k", "train", R, path=str(folder), recipe="vqct")
    prep = ds.protocol["preprocessing"]
    assert prep["recipe"] == "vqct" and "aspect not kept" in prep["resize"] and prep["hflip"] == "off"
    first = sorted(paths["train"], key=lambda p: p.name)[0]
    expected = np.asarray(Image.open(first).convert("RGB").resize((R, R), Image.Resampling.BICUBIC, reducing_gap=None))
    for epoch in (0, 1):  # no random crop, no flip: the same tensor every epoch
        assert torch.equal(ds[(0, epoch)], torch.from_numpy(expected.transpose(2, 0, 1).copy()))


def test_mscoco_vqct_flips_at_validation_too(tmp_path):
    folder, _ = mscoco(tmp_path)
    plain = datasets.create("mscoco", "val", R, path=str(folder))
    vqct = datasets.create("mscoco", "val", R, path=str(folder), recipe="vqct")
    assert vqct.protocol["preprocessing"]["hflip"].startswith("p=0.5")
    assert plain.protocol["preprocessing"]["hflip"] == "off"
    # a flip is its mirror image or the image itself, decided by (seed, name, epoch): deterministic
    for i in range(len(plain)):
        a, b = plain[i], vqct[i]
        assert torch.equal(b, a) or torch.equal(b, a.flip(-1))
        assert torch.equal(b, datasets.create("mscoco", "val", R, path=str(folder), recipe="vqct")[i])
    assert datasets.create("mscoco", "train", R, path=str(folder), recipe="vqct").prep.crop == "center"


def test_cub200_vqct_is_random_crop_and_flip(tmp_path):
    folder, _ = cub200(tmp_path)
    ds = datasets.create("cub200", "train", R, path=str(folder), recipe="vqct")
    assert (ds.prep.crop, ds.prep.hflip) == ("random", True)


def test_unknown_recipe_and_recipe_less_datasets_say_so(tmp_path):
    folder, _ = cub200(tmp_path)
    with pytest.raises(UserError, match="no preprocessing recipe 'official'; it has: vqct"):
        datasets.create("cub200", "train", R, path=str(folder), recipe="official")
    pics = tmp_path / "pics"
    for split in ("train", "val"):
        (pics / split).mkdir(parents=True)
        for k in range(3):
            Image.new("RGB", (20, 20), (k, k, k)).save(pics / split / f"{k}.png")
    with pytest.raises(UserError, match=r"has no preprocessing recipe 'vqct'; it has: \(none\)"):
        datasets.create(f"imagefolder:{pics}", "train", R, recipe="vqct")
