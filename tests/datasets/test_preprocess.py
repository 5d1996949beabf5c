"""Shared preprocessing: colour modes to 8-bit RGB, antialiased shorter-side resize, centre and seeded
random crops, flips."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import datasets
from datasets import preprocess as pp

from .fake_trees import BUILDERS


def _roundtrip(img: Image.Image, fmt: str) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, fmt)
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out


GRAD = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (20, 1))  # (20, 32) ramp


@pytest.mark.parametrize("mode,fmt", [("L", "PNG"), ("1", "PNG"), ("P", "PNG"), ("CMYK", "JPEG"), ("RGBA", "PNG"),
                                      ("LA", "PNG"), ("I;16", "PNG"), ("YCbCr", "JPEG"), ("RGB", "JPEG")])
def test_every_mode_becomes_8bit_rgb(mode, fmt):
    rgb = Image.fromarray(np.stack([GRAD, GRAD[::-1], GRAD], -1))
    if mode == "I;16":
        src = Image.fromarray(GRAD.astype(np.uint16) * 257)  # 16-bit grey: full range
    else:
        src = rgb.convert(mode)
    img = _roundtrip(src, fmt)
    out = pp.to_rgb8(img)
    assert out.mode == "RGB" and out.size == (32, 20)
    a = np.asarray(out)
    assert a.dtype == np.uint8
    if mode == "I;16":
        assert img.mode.startswith("I")
        np.testing.assert_array_equal(a[..., 0], GRAD)  # 65535 -> 255, 257*k -> k


def test_alpha_is_composited_over_white():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200  # red hidden under alpha 0
    rgba[:2, :, 3] = 255
    out = np.asarray(pp.to_rgb8(Image.fromarray(rgba, "RGBA")))
    assert (out[:2] == [200, 0, 0]).all() and (out[2:] == 255).all()
    pal = Image.fromarray(rgba, "RGBA").convert("P")
    pal.info["transparency"] = pal.getpixel((0, 3))
    assert (np.asarray(pp.to_rgb8(pal))[3] == 255).all()


def test_resize_shorter_side_antialiased():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8))
    arr, up = pp.resize_shorter(img, 16, "bicubic")
    assert arr.shape == (16, 24, 3) and not up
    ref = np.asarray(img.resize((24, 16), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(arr, ref)
    # antialiased: a 1-px checkerboard averages to grey, it does not alias into stripes
    checker = ((np.indices((64, 64)).sum(0) % 2) * 255).astype(np.uint8)
    small, _ = pp.resize_shorter(Image.fromarray(checker).convert("RGB"), 16, "bicubic")
    assert abs(float(small.mean()) - 127.5) < 3 and small.std() < 3
    tall, up = pp.resize_shorter(Image.new("RGB", (8, 20)), 16, "lanczos")
    assert tall.shape == (40, 16, 3) and up


def test_center_crop_and_seeded_random_crop():
    resized = np.arange(16 * 24 * 3, dtype=np.int64).reshape(16, 24, 3).astype(np.uint8)
    val = pp.Preprocess(16, crop="center", hflip=False)
    out = pp.finish(pp.stored_form(resized, val), val, "a.jpg", 0)
    assert torch.equal(out, torch.from_numpy(resized[:, 4:20].transpose(2, 0, 1).copy()))
    train = pp.Preprocess(16, crop="random", hflip=True, seed=3)
    stored = pp.stored_form(resized, train)
    assert stored.shape == resized.shape  # the random crop needs the whole resized image
    a = [pp.finish(stored, train, "a.jpg", e) for e in range(12)]
    assert all(torch.equal(x, y) for x, y in zip(a, [pp.finish(stored, train, "a.jpg", e) for e in range(12)]))
    assert len({x.numpy().tobytes() for x in a}) > 3  # epochs differ
    other_seed = pp.Preprocess(16, crop="random", hflip=True, seed=4)
    assert not all(torch.equal(x, pp.finish(stored, other_seed, "a.jpg", e)) for e, x in enumerate(a))
    crops = {resized[:, left:left + 16].transpose(2, 0, 1).tobytes(): left for left in range(9)}
    flipped = {resized[:, left:left + 16][:, ::-1].transpose(2, 0, 1).tobytes(): left for left in range(9)}
    kinds = ["plain" if x.numpy().tobytes() in crops else "flipped" if x.numpy().tobytes() in flipped else "?" for x in a]
    assert "?" not in kinds and {"plain", "flipped"} <= set(kinds)  # every output is a crop, some flipped


def test_train_items_vary_with_epoch_and_not_with_workers(tmp_path):
    folder, _ = BUILDERS["imagefolder-split"][1](tmp_path)
    ds = datasets.create(f"imagefolder:{folder}", "train", 16, seed=1)
    assert not ds.protocol["preprocessing"]["hflip"] == "off"
    e0 = [ds[(i, 0)] for i in range(len(ds))]
    assert all(torch.equal(ds[i], e0[i]) for i in range(len(ds)))  # a plain index is epoch 0
    assert any(not torch.equal(ds[(i, 1)], e0[i]) for i in range(len(ds)))
    fixed = datasets.create(f"imagefolder:{folder}", "train", 16, train_crop="center", hflip=False)
    assert all(torch.equal(fixed[(i, 5)], fixed[i]) for i in range(len(fixed)))
    assert fixed.protocol["preprocessing"]["crop"].startswith("center") and fixed.protocol["preprocessing"]["hflip"] == "off"
    val = datasets.create(f"imagefolder:{folder}", "val", 16)
    assert torch.equal(val[(0, 7)], val[0]) and val.protocol["preprocessing"]["hflip"] == "off"


def test_epoch_keys_through_a_dataloader_are_worker_independent(tmp_path):
    """What the trainer's sampler can yield: batches of (index, epoch) keys. Same tensors with 0 or 2
    workers, different crops in different epochs."""
    from torch.utils.data import DataLoader

    folder, _ = BUILDERS["imagefolder-hash"][1](tmp_path)
    ds = datasets.create(f"imagefolder:{folder}", "train", 16, seed=0)
    assert ds.takes_epoch and datasets.create("photos", "val", 32).takes_epoch
    n = len(ds)
    batches = [[(i, e) for i in range(k, min(k + 4, n))] for e in range(2) for k in range(0, n, 4)]
    a = torch.cat(list(DataLoader(ds, batch_sampler=batches)))
    b = torch.cat(list(DataLoader(ds, batch_sampler=batches, num_workers=2)))
    assert torch.equal(a, b) and not torch.equal(a[:n], a[n:])
