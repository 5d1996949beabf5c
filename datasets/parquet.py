"""`parquet:PATH`: Hugging Face-style parquet shards (`/data/imagenet/data/{split}-*.parquet`, a brace or
glob pattern, one file, or a folder of .parquet files), read with pyarrow. Hugging Face's own
`datasets` library is never imported: this package shadows its name.

The image column holds encoded image bytes: Hugging Face's Image feature stores a struct
{bytes, path}, a plain binary column works too. It is `image_column` (dataset option), else `image`,
else `img`, else the only such column. The label column is `label_column`, else `label` when it is an
integer column; class names come from the Hugging Face metadata (ClassLabel) when the file carries it.
An image's name is the struct's `path` when every row of the shard has a distinct one (Hugging Face
keeps the original file name there, so a folder written to parquet keeps its names, hash split and
crops), else `<shard stem>/<row number, 8 digits>`. Splits: datasets.shards.

The index keeps (row group, row); reading an image decodes its row group's image column, and the
last row group read stays in memory, so reading in order (building the `--dataset-cache`, evaluating)
decodes each row group once. Training with random order re-reads a row group per image: use
`--dataset-cache` for training on large parquet sets.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.core.errors import UserError

from . import files, shards
from .registry import register_dataset

NAME = "parquet"
LAYOUT = "parquet shards with an image column of encoded bytes (a {bytes, path} struct or binary) and an optional label"
IMAGE_COLUMNS = ("image", "img")
LABEL_COLUMN = "label"


def _is_image_type(t: Any) -> bool:
    import pyarrow as pa

    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return True
    return pa.types.is_struct(t) and t.get_field_index("bytes") >= 0


def image_column(dataset: str, shard: Path, schema: Any, wanted: str | None) -> str:
    """The column holding the image bytes (module docstring), or a one-line UserError."""
    names = schema.names
    if wanted is not None:
        if wanted not in names or not _is_image_type(schema.field(wanted).type):
            raise UserError(f"dataset {dataset!r}: {shard} has no image column {wanted!r} of encoded bytes "
                            f"(columns: {', '.join(names)})")
        return wanted
    for n in IMAGE_COLUMNS:
        if n in names and _is_image_type(schema.field(n).type):
            return n
    found = [n for n in names if _is_image_type(schema.field(n).type)]
    if len(found) == 1:
        return found[0]
    raise UserError(f"dataset {dataset!r}: {shard} has {'no' if not found else 'several'} image column(s) of encoded "
                    f"bytes (columns: {', '.join(names)}); name one with --dataset-option image_column=NAME")


def _label_column(dataset: str, shard: Path, schema: Any, wanted: str | None) -> str | None:
    import pyarrow as pa

    name = wanted or LABEL_COLUMN
    ok = name in schema.names and pa.types.is_integer(schema.field(name).type)
    if wanted is not None and not ok:
        raise UserError(f"dataset {dataset!r}: {shard} has no integer label column {wanted!r} "
                        f"(columns: {', '.join(schema.names)})")
    return name if ok else None


def _class_names(schema: Any, column: str | None) -> list[str] | None:
    """ClassLabel names from the Hugging Face metadata stored in the file, if any."""
    raw = (schema.metadata or {}).get(b"huggingface")
    if not raw or column is None:
        return None
    try:
        feature = json.loads(raw)["info"]["features"][column]
    except (ValueError, KeyError, TypeError):
        return None
    names = feature.get("names") if isinstance(feature, dict) else None
    return [str(n) for n in names] if isinstance(names, list) else None


def index_parquet(dataset: str, shard: Path, wanted_image: str | None, wanted_label: str | None) -> shards.ShardIndex:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(shard)
        schema = pf.schema_arrow
        col = image_column(dataset, shard, schema, wanted_image)
        label = _label_column(dataset, shard, schema, wanted_label)
        groups = [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)]
        paths: list[Any] = [None] * sum(groups)
        if pa.types.is_struct(schema.field(col).type) and schema.field(col).type.get_field_index("path") >= 0:
            paths = pc.struct_field(pf.read(columns=[f"{col}.path"]).column(0).combine_chunks(), [0]).to_pylist()
        labels = (pf.read(columns=[label]).column(0).fill_null(-1).to_pylist() if label else [-1] * len(paths))
    except UserError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise UserError(f"dataset {dataset!r}: cannot read shard {shard} as parquet ({type(exc).__name__}: {exc}); "
                        "rewrite or remove the shard") from None
    if None in paths or len(set(paths)) != len(paths):
        paths = [f"{shard.stem}/{r:08d}" for r in range(len(paths))]
    a = [g for g, n in enumerate(groups) for _ in range(n)]
    b = [r for n in groups for r in range(n)]
    return shards.ShardIndex([str(p) for p in paths], a, b, [int(v) for v in labels], _class_names(schema, label))


class ParquetReader:
    """An image's bytes from (row group, row); the last row group's image column stays in memory
    (module docstring). Per process: DataLoader workers get a copy without it."""

    def __init__(self, dataset: str, wanted: str | None) -> None:
        self.dataset, self.wanted = dataset, wanted
        self._last: tuple[str, int, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_last": None}

    def read(self, shard: str, group: int, row: int) -> bytes:
        import pyarrow.parquet as pq

        if self._last is None or self._last[:2] != (shard, group):
            pf = pq.ParquetFile(shard)
            col = image_column(self.dataset, Path(shard), pf.schema_arrow, self.wanted)
            self._last = (shard, group, pf.read_row_group(group, columns=[col]).column(0).combine_chunks())
        value = self._last[2][row].as_py()
        data = value.get("bytes") if isinstance(value, dict) else value
        if data is None:
            where = f" (its path: {value.get('path')})" if isinstance(value, dict) and value.get("path") else ""
            raise OSError(f"the row holds no image bytes{where}")
        return data


def source(dataset: str, image_column: str | None, label_column: str | None) -> shards.Source:
    return shards.Source(NAME, (".parquet",), LAYOUT,
                         lambda ds, shard: index_parquet(ds, shard, image_column, label_column),
                         {"image_column": image_column, "label_column": label_column},
                         ParquetReader(dataset, image_column),
                         lambda shard, name, group, row: f"{shard}:{name}")


def _locate(root: str | None, path: str | None) -> Path:
    if not path:
        raise UserError(f"dataset {NAME!r} needs shards: use {NAME}:PATH, e.g. {NAME}:/data/imagenet/data/{{split}}-*.parquet")
    return shards.locate(source(f"{NAME}:{path}", None, None), path, _check_rows)


def _check_rows(dataset: str, pattern: str) -> None:
    """Shards that exist and hold rows; the columns are checked when the split is made, with the
    dataset options (image_column, label_column) that locating does not see."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    found = shards.shard_files(dataset, pattern, (".parquet",), LAYOUT)
    rows = 0
    for shard in found:
        try:
            rows += pq.ParquetFile(shard).metadata.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise UserError(f"dataset {dataset!r}: cannot read shard {shard} as parquet ({type(exc).__name__}: {exc}); "
                            "rewrite or remove the shard") from None
    if rows == 0:
        raise UserError(f"dataset {dataset!r}: the {len(found)} shard(s) of {pattern} hold no rows; expected {LAYOUT}")


@register_dataset(NAME, "Hugging Face-style parquet shards (image bytes, label); {split}, val_pattern or a 10% hash split", reads_files=True, path_in_name=True, locate=_locate)
def parquet(split: str, resolution: int, root: str | None = None, path: str | None = None,
            val_pattern: str | None = None, val_fraction: float = 0.1, image_column: str | None = None,
            label_column: str | None = None, dataset_name: str | None = None, **options: Any) -> files.ImageFiles:
    name = dataset_name or f"{NAME}:{path}"
    return shards.make_split(source(name, image_column, label_column), split, resolution, path, val_pattern,
                             val_fraction, dataset_name, options)
