"""Small fake copies of each dataset in its real layout: real file names, real split files, tiny images.

Each builder writes under `root` the folder a user would have and returns
(the folder to pass as --dataset-path, {split: [image paths]}) so tests can check discovery and split
sizes, and corrupt or shrink a chosen image.
"""
from __future__ import annotations

import zlib
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

SIZE = (26, 20)  # (w, h): bigger than the test resolution 16 on both sides, not square


def write_image(path: Path, size: tuple[int, int] = SIZE, mode: str = "RGB") -> Path:
    """A deterministic noisy image (content depends on the file name); format from the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(path.name.encode()))
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    if mode != "RGB":
        img = img.convert(mode)
    img.save(path)
    return path


def ffhq(root: Path, layout: str = "images1024x1024", split_files: bool = False) -> tuple[Path, dict[str, list[Path]]]:
    """Images 0-3 and 60000-60001 (taming split: 4 train, 2 val), nested by thousands or flat."""
    folder = root / "ffhq"
    numbers = {"train": [0, 1, 1000, 59999], "val": [60000, 69999]}
    out: dict[str, list[Path]] = {}
    for split, nums in numbers.items():
        for k in nums:
            if layout == "flat":
                p = folder / f"{k:05d}.png"
            else:
                p = folder / layout / f"{k // 1000 * 1000:05d}" / f"{k:05d}.png"
            out.setdefault(split, []).append(write_image(p))
    if split_files:  # taming's lists name files relative to the image folder
        (root / "ffhqtrain.txt").write_text("".join(f"{k:05d}.png\n" for k in numbers["train"]))
        (root / "ffhqvalidation.txt").write_text("".join(f"{k:05d}.png\n" for k in numbers["val"]))
    return folder, out


def ade20k_challenge(root: Path) -> tuple[Path, dict[str, list[Path]]]:
    folder = root / "ade20k"
    base = folder / "ADEChallengeData2016"
    out = {"train": [write_image(base / "images/training" / f"ADE_train_{k:08d}.jpg") for k in (1, 2, 3, 20210)],
           "val": [write_image(base / "images/validation" / f"ADE_val_{k:08d}.jpg") for k in (1, 2000)]}
    # segmentation masks beside the images are never read as images
    (base / "annotations/training").mkdir(parents=True)
    write_image(base / "annotations/training/ADE_train_00000001.png")
    return folder, out


def ade20k_full(root: Path) -> tuple[Path, dict[str, list[Path]]]:
    """The full release: scene folders; each jpg has _seg.png masks and an instance folder beside it."""
    folder = root / "ADE20K_2021_17_01"
    scenes = {"train": ["cultural/apse__indoor", "urban/street", "urban/street"], "val": ["home_or_hotel/bathroom"]}
    out: dict[str, list[Path]] = {}
    k = {"train": 0, "val": 0}
    for split, dirs in scenes.items():
        for d in dirs:
            k[split] += 1
            sub = "training" if split == "train" else "validation"
            stem = f"ADE_{split}_{k[split]:08d}"
            here = folder / "images/ADE" / sub / d
            out.setdefault(split, []).append(write_image(here / f"{stem}.jpg"))
            write_image(here / f"{stem}_seg.png")
            write_image(here / stem / f"instance_000_{stem}.png")
    return folder, out


def celebahq(root: Path, split_files: bool = False, n: int = 24) -> tuple[Path, dict[str, list[Path]]]:
    """celeba_hq_256-style flat folder; with split_files, taming's lists (`imgHQ%05d.npy` lines)."""
    folder = root / "celeba_hq_256"
    paths = {k: write_image(folder / f"{k:05d}.jpg") for k in range(n)}
    if split_files:
        train, val = list(range(0, n - 4)), list(range(n - 4, n))
        (root / "celebahqtrain.txt").write_text("".join(f"imgHQ{k:05d}.npy\n" for k in train))
        (root / "celebahqvalidation.txt").write_text("".join(f"imgHQ{k:05d}.npy\n" for k in val))
        return folder, {"train": [paths[k] for k in train], "val": [paths[k] for k in val]}
    from datasets import files

    out: dict[str, list[Path]] = {"train": [], "val": []}
    for k, p in paths.items():
        out[files.hash_split(f"{k:05d}", 1 / 6)].append(p)
    return folder, out


CUB_IMAGES = [  # (id, class folder/file, is_train) as in the release's images.txt / train_test_split.txt
    (1, "001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg", 0),
    (2, "001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg", 1),
    (3, "001.Black_footed_Albatross/Black_Footed_Albatross_0002_55.jpg", 0),
    (4, "002.Laysan_Albatross/Laysan_Albatross_0002_1027.jpg", 1),
    (5, "002.Laysan_Albatross/Laysan_Albatross_0003_1033.jpg", 1),
    (6, "200.Common_Yellowthroat/Common_Yellowthroat_0003_190521.jpg", 1),
]


def cub200(root: Path) -> tuple[Path, dict[str, list[Path]]]:
    base = root / "CUB_200_2011"
    base.mkdir(parents=True)
    (base / "images.txt").write_text("".join(f"{i} {rel}\n" for i, rel, _ in CUB_IMAGES))
    (base / "train_test_split.txt").write_text("".join(f"{i} {t}\n" for i, _, t in CUB_IMAGES))
    (base / "classes.txt").write_text("1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n")
    out: dict[str, list[Path]] = {"train": [], "val": []}
    for _, rel, t in CUB_IMAGES:
        out["train" if t else "val"].append(write_image(base / "images" / rel))
    return base, out


def mscoco(root: Path, year: int = 2017) -> tuple[Path, dict[str, list[Path]]]:
    folder = root / "coco"
    ids = {"train": [9, 25, 30], "val": [139, 285]}
    name = (lambda s, k: f"{k:012d}.jpg") if year == 2017 else (lambda s, k: f"COCO_{s}{year}_{k:012d}.jpg")
    out = {s: [write_image(folder / f"{s}{year}" / name(s, k)) for k in ks] for s, ks in ids.items()}
    (folder / "annotations").mkdir(exist_ok=True)
    (folder / "annotations" / f"captions_train{year}.json").write_text("{}")
    return folder, out


def imagenet(root: Path, val_per_class: bool = False) -> tuple[Path, dict[str, list[Path]]]:
    folder = root / "imagenet"
    train = [folder / "train" / w / f"{w}_{k}.JPEG" for w in ("n01440764", "n01443537") for k in (10026, 10027)]
    val_wnid = {1: "n01443537", 2: "n01440764", 3: "n01440764"}
    val = [folder / "val" / (val_wnid[k] if val_per_class else "") / f"ILSVRC2012_val_{k:08d}.JPEG" for k in (1, 2, 3)]
    return folder, {"train": [write_image(p) for p in train], "val": [write_image(p) for p in val]}


def imagefolder_split(root: Path) -> tuple[Path, dict[str, list[Path]]]:
    folder = root / "pics"
    out = {"train": [write_image(folder / "train" / "cats" / f"c{k}.png") for k in range(3)]
           + [write_image(folder / "train" / f"x{k}.jpg") for k in range(2)],
           "val": [write_image(folder / "val" / f"v{k}.webp") for k in range(2)]}
    return folder, out


def imagefolder_hash(root: Path) -> tuple[Path, dict[str, list[Path]]]:
    """No train/ and val/: a 10% hash split over the relative paths, with nested folders."""
    from datasets import files

    folder = root / "pics"
    out: dict[str, list[Path]] = {"train": [], "val": []}
    for k in range(30):
        p = write_image(folder / f"sub{k % 3}" / f"img{k:03d}.jpg")
        out[files.hash_split(p.relative_to(folder).as_posix(), 0.1)].append(p)
    (folder / "notes.txt").write_text("not an image")
    return folder, out


# name used with datasets.create (imagefolder gets its path in the name) -> builder
BUILDERS: dict[str, tuple[str, Callable[[Path], tuple[Path, dict[str, list[Path]]]]]] = {
    "ffhq-1024": ("ffhq", ffhq),
    "ffhq-thumbs": ("ffhq", lambda r: ffhq(r, "thumbnails128x128")),
    "ffhq-flat-splitfiles": ("ffhq", lambda r: ffhq(r, "flat", split_files=True)),
    "ade20k-challenge": ("ade20k", ade20k_challenge),
    "ade20k-full": ("ade20k", ade20k_full),
    "celebahq-hash": ("celebahq", celebahq),
    "celebahq-splitfiles": ("celebahq", lambda r: celebahq(r, split_files=True)),
    "cub200": ("cub200", cub200),
    "mscoco-2017": ("mscoco", mscoco),
    "mscoco-2014": ("mscoco", lambda r: mscoco(r, 2014)),
    "imagenet-flatval": ("imagenet", imagenet),
    "imagenet-classval": ("imagenet", lambda r: imagenet(r, val_per_class=True)),
    "imagefolder-split": ("imagefolder", imagefolder_split),
    "imagefolder-hash": ("imagefolder", imagefolder_hash),
}


def dataset_name(kind: str, folder: Path) -> str:
    name = BUILDERS[kind][0]
    return f"imagefolder:{folder}" if name == "imagefolder" else name
