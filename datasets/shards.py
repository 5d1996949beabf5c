"""What the sharded sources (`webdataset:PATTERN`, `parquet:PATH`) share: expanding a shard pattern,
choosing each split's shards, an index of every image's place in its shard (built once per shard and
cached), and `ShardImages`, the ImageFiles that reads an image's bytes from that place.

Random access through the index is what keeps sharded data exact: the trainer's sampler asks for item
i of a split sorted by image name, whatever the source, so a resumed run and every data-parallel
worker see the batches they would have seen with an image folder. The same images written as a folder,
as tar shards or as parquet, under the same names, give the same tensors and the same runs.

Splits, in this order:
  1. PATH holds `{split}`: `train` and `val` are put in its place (`webdataset:/data/{split}-{000..009}.tar`);
  2. the dataset option `val_pattern` names the val shards, PATH the train shards;
  3. otherwise a hash split of image names over all shards (datasets.files.hash_split, as imagefolder:
     val when crc32(name) / 2^32 < val_fraction, default 0.1).

A shard's index is cached under `$VQBENCH_CACHE/datasets/shard-index/`, keyed by the shard's absolute
path, size and modification time and by what was indexed; a rewritten shard is indexed again.
"""
from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from PIL import Image

from bench.core.atomic import write_json_atomic
from bench.core.errors import UserError
from bench.core.paths import cache_dir

from . import files
from . import preprocess as pp

INDEX_VERSION = 1
SPLIT_FIELD = "{split}"
_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")
_CHOICE = re.compile(r"\{([^{}]*,[^{}]*)\}")


# ---------------------------------------------------------------------------------------- patterns
def expand(pattern: str) -> list[str]:
    """Brace expansion as webdataset writes shard lists: `{000..009}` (zero-padded as written) and
    `{a,b}`; then shell globs (`*`, `?`, `[...]`) against the filesystem. Order as written."""
    found = [m for m in (_RANGE.search(pattern), _CHOICE.search(pattern)) if m]
    if found:  # the leftmost group first, as the shell and webdataset's braceexpand order them
        m = min(found, key=lambda x: x.start())
        if m.re is _RANGE:
            lo, hi = m.group(1), m.group(2)
            width = len(lo) if lo.startswith("0") or len(lo) == len(hi) else 0
            step = 1 if int(hi) >= int(lo) else -1
            choices = [str(k).zfill(width) for k in range(int(lo), int(hi) + step, step)]
        else:
            choices = m.group(1).split(",")
        return [s for c in choices for s in expand(pattern[:m.start()] + c + pattern[m.end():])]
    if glob.has_magic(pattern):
        return sorted(glob.glob(pattern))
    return [pattern]


def shard_files(dataset: str, pattern: str, suffixes: tuple[str, ...], what: str) -> list[Path]:
    """The shards `pattern` names: a file, a brace/glob pattern, or a folder (its files ending in one of
    `suffixes`, sorted). One-line UserError when none exist, or when some named ones are missing."""
    p = Path(pattern).expanduser()
    if p.is_dir():
        found = sorted(q for q in p.iterdir() if q.is_file() and q.name.endswith(suffixes) and not q.name.startswith("."))
        if not found:
            raise UserError(f"dataset {dataset!r}: no {'/'.join(suffixes)} files in {p}; expected {what}")
        return found
    named = [Path(s) for s in expand(str(p))]
    missing = [str(s) for s in named if not s.is_file()]
    if not named or len(missing) == len(named):
        tried = (f"tried {', '.join(missing[:files.SHOW])}{', ...' if len(missing) > files.SHOW else ''}" if missing
                 else "no file matches the glob")
        raise UserError(f"dataset {dataset!r}: no shard matches {pattern} ({tried}); expected {what}")
    if missing:
        raise UserError(f"dataset {dataset!r}: {len(missing)} of the {len(named)} shards of {pattern} are missing "
                        f"(first: {', '.join(missing[:files.SHOW])})")
    return named


def split_patterns(path: str, val_pattern: str | None) -> dict[str, str] | None:
    """{split: pattern} when the splits have their own shards, None for a hash split of `path`."""
    if SPLIT_FIELD in path:
        if val_pattern:
            raise UserError(f"give the val shards either by {SPLIT_FIELD} in the path or by val_pattern, not both "
                            f"(path {path}, val_pattern {val_pattern})")
        return {s: path.replace(SPLIT_FIELD, s) for s in ("train", "val")}
    if val_pattern:
        return {"train": path, "val": os.path.abspath(os.path.expanduser(str(val_pattern)))}
    return None


# ---------------------------------------------------------------------------------------- index
@dataclass
class ShardIndex:
    """Where each image of one shard is: `names[k]` at (a[k], b[k]) (tar: byte offset and size; parquet:
    row group and row), with `labels[k]` (-1: none). `label_names`: the shard's own class names, if any."""

    names: list[str]
    a: list[int]
    b: list[int]
    labels: list[int]
    label_names: list[str] | None = None


def load_index(shard: Path, kind: str, settings: dict[str, Any], build: Callable[[Path], ShardIndex]) -> ShardIndex:
    """The shard's index from the cache, else `build(shard)` written to the cache (atomically)."""
    st = shard.stat()
    blob = json.dumps({"version": INDEX_VERSION, "kind": kind, "shard": str(shard.resolve()), "size": st.st_size,
                       "mtime_ns": st.st_mtime_ns, **settings}, sort_keys=True)
    where = cache_dir("datasets", "shard-index") / f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:20]}.json"
    if where in _loaded:  # a grid asks for each split several times (locate, prepare, the run)
        return _loaded[where]
    try:
        index = ShardIndex(**json.loads(where.read_text()))
    except (OSError, ValueError, TypeError):  # absent, or left by another version: build it again
        index = build(shard)
        write_json_atomic(where, index.__dict__)
    _loaded[where] = index
    return index


_loaded: dict[Path, ShardIndex] = {}


# ---------------------------------------------------------------------------------------- reading
class ShardReader(Protocol):
    """Reads one image's encoded bytes from its shard; opens files lazily, per process (DataLoader
    workers get a copy without open handles)."""

    def read(self, shard: str, a: int, b: int) -> bytes: ...


def decode_bytes(data: bytes) -> Image.Image:
    """preprocess.decode for bytes held in a shard (same colour rules; an empty member named as such)."""
    if not data:
        raise OSError("empty file (0 bytes)")
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return pp.to_rgb8(img)


class ShardImages(files.ImageFiles):
    """ImageFiles whose image j is read from shard `shards[shard_of[j]]` at (a[j], b[j]) by `reader`.
    Its `paths` are addresses for messages: `SHARD:MEMBER` (tar) or `SHARD:row N` (parquet)."""

    def __init__(self, base: files.ImageFiles, shards: list[str], places: dict[str, tuple[int, int, int]],
                 reader: ShardReader) -> None:
        super().__init__(base.dataset, base.split, base.names, base.paths, base.prep, base._protocol,
                         base.skip_bad_images)
        rows = np.array([places[n] for n in base.names], dtype=np.int64).reshape(-1, 3)
        self.shards, self.reader = list(shards), reader
        self.shard_of, self.a, self.b = rows[:, 0], rows[:, 1], rows[:, 2]

    def decode_stored(self, j: int) -> tuple[np.ndarray | None, bool, str | None]:
        try:
            img = decode_bytes(self.reader.read(self.shards[int(self.shard_of[j])], int(self.a[j]), int(self.b[j])))
        except Exception as exc:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError, ... for bad bytes
            return None, False, f"{type(exc).__name__}: {exc}"
        resized, upscaled = pp.resize_image(img, self.prep)
        return pp.stored_form(resized, self.prep), upscaled, None


# ---------------------------------------------------------------------------------------- factory
@dataclass(frozen=True)
class Source:
    """One sharded format: its name, shard suffixes, layout text, how to index a shard, how to read."""

    name: str
    suffixes: tuple[str, ...]
    layout: str
    index: Callable[[str, Path], ShardIndex]  # (dataset, shard) -> index; one-line UserError on a bad shard
    settings: dict[str, Any]  # what the index depends on besides the shard (columns), for its cache key
    reader: ShardReader
    address: Callable[[str, str, int, int], str]  # (shard, name, a, b) -> the text naming an image


def _indexed(src: Source, dataset: str, pattern: str) -> list[tuple[Path, ShardIndex]]:
    shards = shard_files(dataset, pattern, src.suffixes, src.layout)
    out = [(s, load_index(s, src.name, src.settings, lambda p: src.index(dataset, p))) for s in shards]
    if not any(ix.names for _, ix in out):
        raise UserError(f"dataset {dataset!r}: the {len(shards)} shard(s) of {pattern} hold no images; expected {src.layout}")
    return out


def locate(src: Source, path: str, check: Callable[[str, str], Any] | None = None) -> Path:
    """Check the shards of every split exist and hold images, by `check(dataset, pattern)`, else by
    indexing them (once, cached), so that a bad shard fails before any work starts."""
    dataset = f"{src.name}:{path}"
    for pattern in (split_patterns(path, None) or {"all": path}).values():
        if check is not None:
            check(dataset, pattern)
        else:
            _indexed(src, dataset, pattern)
    return Path(path)


def make_split(src: Source, split: str, resolution: int, path: str | None, val_pattern: str | None,
               val_fraction: float, dataset_name: str | None, options: dict[str, Any]) -> files.ImageFiles:
    """The split as ShardImages (or its decoded cache), through files.make like every folder dataset."""
    name = dataset_name or f"{src.name}:{path}"
    if not path:
        raise UserError(f"dataset {src.name!r} needs shards: use {src.name}:PATTERN")
    if not 0.0 < float(val_fraction) < 1.0:
        raise UserError(f"{src.name} val_fraction must be between 0 and 1, got {val_fraction!r}")
    patterns = split_patterns(path, val_pattern)
    indexed = {s: _indexed(src, name, p) for s, p in patterns.items()} if patterns else {"all": _indexed(src, name, path)}
    mine = indexed[split] if patterns else indexed["all"]
    shards = [str(s) for s, _ in mine]
    items, places = [], {}
    for k, (shard, ix) in enumerate(mine):
        for n, a, b in zip(ix.names, ix.a, ix.b):
            if patterns or files.hash_split(n, float(val_fraction)) == split:
                items.append((n, src.address(str(shard), n, a, b)))
                places[n] = (k, a, b)
    if patterns:
        rule = f"train shards {patterns['train']}, val shards {patterns['val']}"
    else:
        rule = f"hash: val when crc32(image name) / 2^32 < {float(val_fraction)}"
        if not items:
            n = sum(len(ix.names) for _, ix in mine)
            raise UserError(f"dataset {name!r}: the hash split leaves {split} empty ({n} image(s) in {path}); "
                            f"add images, change val_fraction, or give train and val shards ({SPLIT_FIELD} or val_pattern)")
    info = {"layout": src.name, "split_rule": rule, "val_fraction": None if patterns else float(val_fraction),
            "shards": len(shards)}
    cache, cache_workers = options.pop("cache", False), options.pop("cache_workers", None)
    where = Path(patterns[split] if patterns else path)
    base = files.make(name, split, resolution, items, info, where=where, layout=src.layout, **options)
    ds: files.ImageFiles = ShardImages(base, shards, places, src.reader)
    if cache:
        from .cache import cached

        ds = cached(ds, where, workers=cache_workers)
    _set_labels(ds, [ix for group in indexed.values() for _, ix in group])
    return ds


def _set_labels(ds: files.ImageFiles, every: list[ShardIndex]) -> None:
    """Labels when every image of both splits has one: class k is `label_names[k]`, the shards' own
    class names when they carry them (Hugging Face ClassLabel), else the numbers as text."""
    by_name = {n: lab for ix in every for n, lab in zip(ix.names, ix.labels)}
    if not by_name or min(by_name.values()) < 0:
        return
    top = max(by_name.values())
    given = next((ix.label_names for ix in every if ix.label_names), None)
    ds.label_names = list(given) if given and len(given) > top else [str(k) for k in range(top + 1)]
    ds.labels = [by_name[n] for n in ds.names]
