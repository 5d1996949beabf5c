"""Fault injection on `imagefolder:PATH`: each odd file is handled as docs/datasets.md says
("Preprocessing", "Bad input"). Bad files (truncated PNG, zero-byte files) fail with a one-line
BadImageError (a UserError) naming the file, or are skipped and counted with skip_bad_images, with and
without the decoded cache; good-but-odd files (1x1, CMYK JPEG, 16-bit PNG) become the documented 8-bit
RGB pixels. What tests/datasets/test_bad_images_and_cache.py already covers (truncated files on every
dataset, a slot served by the next image, small images warned and counted, worker counts) is not
repeated here."""
from __future__ import annotations

import functools
import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import datasets
from bench.cli.main import main
from bench.core.errors import UserError
from bench.evaluation import evaluator
from bench.runs import runner

from ..datasets.fake_trees import write_image
from ..datasets.test_cli_data import _records

R = 16


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VQBENCH_CACHE", str(tmp_path / "cache"))


def _folder(root: Path) -> Path:
    """train/ with 3 and val/ with 2 ordinary images; a test adds its odd file to one split."""
    folder = root / "pics"
    for k in range(3):
        write_image(folder / "train" / f"t{k}.png")
    for k in range(2):
        write_image(folder / "val" / f"v{k}.jpg")
    return folder


def _create(folder: Path, split: str, **options):
    return datasets.create("imagefolder:" + str(folder), split, R, **options)


def _all(ds):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the upscale warning; tested where it matters
        return [ds[i] for i in range(len(ds))]


def _truncated_png(path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(buf, "PNG")
    data = buf.getvalue()
    path.write_bytes(data[: len(data) // 2])


def _png16_rgb(path: Path, arr: np.ndarray) -> None:
    """A 16-bit RGB PNG written by hand: Pillow has no 16-bit RGB mode to save one."""
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))  # filter 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)  # bit depth 16, colour type 2 (RGB)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))


# ------------------------------------------------------------------------------------ bad files
BAD = {  # file name -> (writer, what the error says about it)
    "bad.png": (_truncated_png, "OSError: image file is truncated"),
    "empty.png": (lambda p: p.write_bytes(b""), "OSError: empty file (0 bytes)"),
    "empty.jpg": (lambda p: p.write_bytes(b""), "OSError: empty file (0 bytes)"),
}


@pytest.mark.parametrize("cache", [False, True], ids=["decoded", "cached"])
@pytest.mark.parametrize("bad_name", sorted(BAD))
def test_bad_file_fails_naming_it_or_is_skipped_and_counted(bad_name, cache, tmp_path):
    folder = _folder(tmp_path)
    bad = folder / "train" / bad_name
    writer, cause = BAD[bad_name]
    writer(bad)
    opts = {"cache": cache, "cache_workers": 0}
    with pytest.raises(datasets.BadImageError) as e:  # with the cache, building it reads every file
        _all(_create(folder, "train", **opts))
    msg = str(e.value)
    assert isinstance(e.value, UserError)  # one line at the CLI, no traceback
    assert f"cannot read image {bad} ({cause}" in msg and "--skip-bad-images" in msg and "\n" not in msg, msg

    ds = _create(folder, "train", skip_bad_images=True, **opts)
    items = _all(ds)
    assert len(ds) == 4 and all(x.shape == (3, R, R) for x in items)  # the length stays fixed
    s = ds.stats()
    assert (s["bad_images_skipped"], s["bad_image_examples"], s["images_read"]) == (1, [bad_name], 4)
    assert ds.protocol["bad_images_skipped"] == 1 and s["upscaled_images"] == 0


# ------------------------------------------------------------------------------------ odd but good
@pytest.mark.parametrize("cache", [False, True], ids=["decoded", "cached"])
@pytest.mark.parametrize("split", ["train", "val"])
def test_one_pixel_image_is_upscaled_to_its_colour_and_counted(split, cache, tmp_path):
    folder = _folder(tmp_path)
    one = folder / split / "one.png"
    Image.new("RGB", (1, 1), (10, 200, 30)).save(one)
    for skip in (False, True):  # a good image: never skipped, whatever skip_bad_images says
        datasets.files._warned.clear()
        with pytest.warns(UserWarning, match=f"{one} is smaller than {R} px and was upscaled"):
            ds = _create(folder, split, skip_bad_images=skip, cache=cache, cache_workers=0)
            x = ds[(ds.names.index("one.png"), 3)]  # train: a random crop and flip of some later epoch
        assert x.shape == (3, R, R) and (x.permute(1, 2, 0) == torch.tensor([10, 200, 30], dtype=torch.uint8)).all()
        _all(ds)
        s = ds.stats()
        assert (s["upscaled_images"], s["upscaled_examples"], s["bad_images_skipped"]) == (1, ["one.png"], 0)


def _pixels(folder: Path, name: str) -> np.ndarray:
    """The val item of `name` as HWC uint8 (R x R files: no resize; centre crop of the whole image)."""
    ds = _create(folder, "val")
    return ds[ds.names.index(name)].permute(1, 2, 0).numpy()


def test_cmyk_jpeg_becomes_rgb_by_pils_rule(tmp_path):
    folder = _folder(tmp_path)
    path = folder / "val" / "cmyk.jpg"
    cmyk = np.zeros((R, R, 4), np.uint8)
    cmyk[:, : R // 2] = (50, 100, 0, 30)  # halves on JPEG's 8x8 blocks: flat blocks decode almost exactly
    cmyk[:, R // 2 :] = (0, 255, 0, 0)
    Image.fromarray(cmyk, "CMYK").save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    a = _pixels(folder, "cmyk.jpg").astype(int)
    # by hand, channel = (255 - ink) * (255 - K) / 255: (205*225/255, 155*225/255, 255*225/255) = (180.9, 136.8, 225)
    # (the subtractive 255 - ink - K would give (175, 125, 225))
    assert np.abs(a[:, : R // 2] - [181, 137, 225]).max() <= 2
    assert np.abs(a[:, R // 2 :] - [255, 0, 255]).max() <= 2


# 16-bit sample -> 8 bits. Grey: round(v / 257) (never a tie: 257 is odd). Columns sit at the rounding edges.
GREY16 = [0, 128, 129, 257, 385, 386, 25828, 25829, 32639, 32767, 32768, 32896, 65278, 65279, 65406, 65535]
GREY8 = [0, 0, 1, 1, 1, 2, 100, 101, 127, 127, 128, 128, 254, 254, 254, 255]


def test_16bit_grey_png_is_scaled_by_1_over_257(tmp_path):
    folder = _folder(tmp_path)
    path = folder / "val" / "grey16.png"
    Image.fromarray(np.tile(np.array(GREY16, np.uint16), (R, 1))).save(path)
    assert Image.open(path).mode in ("I;16", "I")  # really 16 bits on disk
    a = _pixels(folder, "grey16.png")
    assert (a == np.array(GREY8, np.uint8)[None, :, None]).all(), a[0, :, 0]  # grey: R = G = B


def test_16bit_rgb_png_keeps_the_high_byte(tmp_path):
    folder = _folder(tmp_path)
    path = folder / "val" / "rgb16.png"
    red = np.array(GREY16, np.uint16)
    arr = np.stack([np.tile(red, (R, 1)), np.tile(red[::-1], (R, 1)), np.full((R, R), 32768, np.uint16)], -1)
    _png16_rgb(path, arr)
    with Image.open(path) as img:
        assert img.mode == "RGB"  # Pillow decodes 16-bit RGB straight to 8 bits
    a = _pixels(folder, "rgb16.png")
    high = [0, 0, 0, 1, 1, 1, 100, 100, 127, 127, 128, 128, 254, 254, 255, 255]  # v // 256, by hand
    assert a[0, :, 0].tolist() == high and a[0, :, 1].tolist() == high[::-1] and (a[..., 2] == 128).all()
    assert high != GREY8  # the documented difference from the grey rule is real


# ------------------------------------------------------------------------------------ command line
def test_cli_truncated_val_png_fails_the_run_naming_it_then_skips(tmp_path, capsys, monkeypatch):
    """A bad file is not bad input caught before work starts (exit 2): the run fails and is recorded,
    and the benchmark exits 1; rerun with --skip-bad-images, the same run finishes and counts it."""
    monkeypatch.setattr(runner, "evaluate", functools.partial(evaluator.evaluate, perceptual=False))
    folder = _folder(tmp_path)
    bad = folder / "val" / "bad.png"
    _truncated_png(bad)
    out = tmp_path / "results"
    args = ["--no-ray", "--preset", "smoke", "--steps", "2", "--methods", "vqgan", "--codebook-sizes", "16",
            "--no-progress", "--datasets", f"imagefolder:{folder}", "--out", str(out)]
    assert main(args) == 1
    (rec,) = _records(out)
    assert rec["status"] == "failed" and f"cannot read image {bad} (OSError: image file is truncated" in rec["error"]
    assert str(bad) in capsys.readouterr().err
    assert main([*args, "--skip-bad-images"]) == 0
    (rec,) = _records(out)
    assert rec["status"] == "finished"
    assert rec["data"]["val"]["bad_images_skipped"] == 1 and rec["data"]["val"]["bad_image_examples"] == ["bad.png"]
    assert rec["data"]["val"]["images_read"] == 3
