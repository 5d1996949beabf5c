"""`webdataset:PATTERN`: WebDataset tar shards (`/data/train-{000..009}.tar`, a glob, one .tar, or a
folder of .tar files). A sample is the members sharing a KEY (the member name up to the first dot of
its file name, WebDataset's rule): `KEY.jpg` (or .jpeg, .png, .webp, any datasets.files.IMAGE_EXTS:
the field after the KEY is exactly an image type, so `KEY.seg.png` masks are not read as images) and
optionally `KEY.cls`, an integer class as text. An image's name is its member name (`n01440764/x.jpg`,
a leading `./` dropped), so the tar of a folder's files has the folder's names, hash split and crops.
Splits: datasets.shards.

Read with the standard library's tarfile, not the `webdataset` package: that package streams shards
in order (an IterableDataset), while the trainer needs item i of a split sorted by name. A tar member's
bytes sit contiguously at a known offset, so the index keeps (offset, size) from one pass over the
headers and an image is one positioned read, exact and without a new dependency. Compressed
(.tar.gz) shards have no such offsets and are refused.
"""
from __future__ import annotations

import os
import tarfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

from bench.core.errors import UserError

from . import files, shards
from .registry import register_dataset

NAME = "webdataset"
LAYOUT = "uncompressed tar shards of KEY.jpg|png|webp members, each with an optional KEY.cls (integer class)"


def split_key(member: str) -> tuple[str, str]:
    """(KEY, extension) as WebDataset groups members: `a/b.c.jpg` -> (`a/b`, `c.jpg`)."""
    folder, base = os.path.split(member)
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def index_tar(dataset: str, shard: Path) -> shards.ShardIndex:
    """One pass over the shard's headers: each image member's (offset, size) and its KEY.cls."""
    names, a, b, keys = [], [], [], []
    classes: dict[str, int] = {}
    try:
        with tarfile.open(shard, "r:") as tar:
            for m in tar:
                if not m.isfile():
                    continue
                member = m.name[2:] if m.name.startswith("./") else m.name  # `tar cf x.tar ./`: folder names
                key, ext = split_key(member)
                if ext == "cls":
                    text = tar.extractfile(m).read().decode(errors="replace").strip()
                    try:
                        classes[key] = int(text)
                    except ValueError:
                        raise UserError(f"dataset {dataset!r}: {shard}:{m.name} holds {text[:40]!r}, not an integer "
                                        "class; a KEY.cls member holds the class number as text") from None
                elif "." + ext in files.IMAGE_EXTS and not os.path.basename(member).startswith("."):
                    # the field is exactly an image type: KEY.seg.png (a mask), KEY.json, ... are other fields
                    names.append(member)
                    a.append(m.offset_data)
                    b.append(m.size)
                    keys.append(key)
    except tarfile.CompressionError as exc:  # pragma: no cover - "r:" never decompresses
        raise UserError(f"dataset {dataset!r}: {shard}: {exc}") from None
    except (tarfile.ReadError, EOFError, OSError) as exc:
        compressed = _looks_compressed(shard)
        raise UserError(f"dataset {dataset!r}: cannot read shard {shard} as a tar archive ({exc}); "
                        + ("it is compressed: webdataset shards must be uncompressed .tar for random access"
                           if compressed else "rewrite or remove the shard")) from None
    labels = [classes.get(k, -1) for k in keys]
    return shards.ShardIndex(names, a, b, labels)


def _looks_compressed(shard: Path) -> bool:
    with open(shard, "rb") as f:
        head = f.read(6)
    return head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x28\xb5\x2f\xfd"))


class TarReader:
    """An image's bytes: one positioned read (os.pread) in its shard. pread keeps no file position, so
    descriptors a forked DataLoader worker inherits are safe to share. At most OPEN_SHARDS stay open
    (ImageNet has 1,000+ shards; the usual limit is 1,024 open files)."""

    OPEN_SHARDS = 32

    def __init__(self) -> None:
        self._open: OrderedDict[str, int] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        return {"_open": OrderedDict()}

    def read(self, shard: str, offset: int, size: int) -> bytes:
        fd = self._open.get(shard)
        if fd is None:
            while len(self._open) >= self.OPEN_SHARDS:
                os.close(self._open.popitem(last=False)[1])
            fd = self._open[shard] = os.open(shard, os.O_RDONLY)
        self._open.move_to_end(shard)
        data = os.pread(fd, size, offset)
        if len(data) != size:
            raise OSError(f"the shard is truncated: {len(data)} of the member's {size} bytes are there")
        return data


SOURCE = shards.Source(NAME, (".tar",), LAYOUT, index_tar, {}, TarReader(),
                       lambda shard, name, a, b: f"{shard}:{name}")


def _locate(root: str | None, path: str | None) -> Path:
    if not path:
        raise UserError(f"dataset {NAME!r} needs shards: use {NAME}:PATTERN, e.g. {NAME}:/data/train-{{000..009}}.tar")
    return shards.locate(SOURCE, path)


@register_dataset(NAME, "WebDataset tar shards (KEY.jpg|png|webp, KEY.cls); {split}, val_pattern or a 10% hash split", reads_files=True, path_in_name=True, locate=_locate)
def webdataset(split: str, resolution: int, root: str | None = None, path: str | None = None,
               val_pattern: str | None = None, val_fraction: float = 0.1, dataset_name: str | None = None,
               **options: Any) -> files.ImageFiles:
    return shards.make_split(SOURCE, split, resolution, path, val_pattern, val_fraction, dataset_name, options)
