"""Which FID reference each record's rFID was measured against, and the table columns that keep the
references apart: tables never put two references in one column.

A record names its reference in protocol["fid"]["reference"] (bench.evaluation.metrics.
fid_reference_choice: `val`, `train:N`, `stats:<file>@<sha1>`). Records from before the option hold a
sentence there ("originals of the same split, ...") or nothing: both mean `val`, the only reference
there was. The metrics measured against the reference (rFID, rFID-infinity, KID) of a record whose
reference is not `val` go to the column `<key>@<reference>` (registry.REFERENCE_SEPARATOR), which the
metric registry labels "<label> (vs <reference>)"; the plain column holds `val` values only and is
labelled "<label> (vs val)".
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bench.evaluation.metrics import keys
from bench.evaluation.metrics.fid_reference_choice import STATS, TRAIN, VAL
from bench.evaluation.metrics.registry import REFERENCE_SEPARATOR, spec

__all__ = [
    "REFERENCE_METRICS",
    "VAL",
    "base_key",
    "column",
    "label",
    "record_reference",
    "split_by_reference",
    "variants",
]
REFERENCE_METRICS = (keys.FID, keys.FID_INF, keys.KID, keys.KID_STD)  # their values depend on the reference


def record_reference(record: Mapping[str, Any]) -> str:
    """The short label of the record's FID reference; `val` for records that name none."""
    entry = (record.get("protocol") or {}).get("fid")
    ref = entry.get("reference") if isinstance(entry, Mapping) else None
    if isinstance(ref, str) and (ref == VAL or ref.startswith((f"{TRAIN}:", f"{STATS}:"))):
        return ref
    return VAL


def column(key: str, reference: str) -> str:
    """The table column of metric `key` measured against `reference`."""
    if key not in REFERENCE_METRICS or reference == VAL:
        return key
    return f"{key}{REFERENCE_SEPARATOR}{reference}"


def base_key(col: str) -> str:
    """The metric a column shows (`fid@train:5000` -> `fid`)."""
    return col.partition(REFERENCE_SEPARATOR)[0]


def split_by_reference(metrics: Mapping[str, Any], reference: str) -> dict[str, Any]:
    """A record's metrics keyed by column: reference metrics of a non-val reference renamed, and
    their plain keys left empty (None), so no val column receives them."""
    out = dict(metrics)
    if reference == VAL:
        return out
    for key in REFERENCE_METRICS:
        if key in out:
            out[column(key, reference)] = out[key]
            out[key] = None
    return out


def variants(base: str, columns: Iterable[str]) -> list[str]:
    """The non-val reference columns of metric `base` among `columns`, sorted."""
    prefix = f"{base}{REFERENCE_SEPARATOR}"
    return sorted(c for c in columns if c.startswith(prefix))


def label(col: str) -> str:
    """A column's header label without its arrow: the reference named for every reference metric."""
    if col in REFERENCE_METRICS:
        return f"{spec(col).label} (vs {VAL})"
    return spec(col).label
