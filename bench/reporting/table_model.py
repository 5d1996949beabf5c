"""Tables as data, before any format: columns, cells with their marks, and the notes under them.

`dataset_tables` and `cross_table` turn the summary frames into `Table`s; each renderer
(bench.reporting.renderers) only decides how a `Table` looks in its format.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench.evaluation.metrics import fid_infinity, keys
from bench.evaluation.metrics.registry import HIGHER, LOWER, spec
from bench.reporting import fid_reference_columns as fid_refs
from bench.reporting.frames import (
    BIT_COLUMNS,
    BITS_PER_PIXEL,
    GROUP_FIELDS,
    LAYOUT_COLUMNS,
    MEASURED,
    RELEASED,
    REPORTED,
    metrics_of,
)

FID_DAGGER_BELOW = 2048  # FIDs from fewer images are biased upwards and not comparable to papers'
NA = "—"  # the text of a cell without a value
ARROWS = {LOWER: "↓", HIGHER: "↑"}  # the LaTeX renderer translates them


@dataclass
class Cell:
    text: str
    rank: int = 0  # 1 best or tied with it (bold), 2 best of the rest (underline); see cell_stats
    dagger: bool = False  # FID from fewer than FID_DAGGER_BELOW images
    italic: bool = False  # reported, not measured

    @property
    def empty(self) -> bool:
        return self.text == NA


@dataclass
class Column:
    label: str  # header without its arrow
    better: str | None = None  # LOWER, HIGHER or None (no arrow)
    numeric: bool = False  # right-aligned

    @property
    def header(self) -> str:
        """The label with ↓ / ↑ when a direction is better (renderers may translate the arrow)."""
        return f"{self.label} {ARROWS.get(self.better or '', '')}".strip()


@dataclass
class Table:
    title: str  # heading or caption
    columns: list[Column]
    rows: list[list[Cell]]


@dataclass
class Document:
    """What one render call turns into text: the tables, the notes under them (plain text, see
    bench.reporting.footnotes) and the frame they came from (machine-readable formats write it)."""
    tables: list[Table]
    notes: list[str]
    data: pd.DataFrame


def is_na(value: Any) -> bool:
    """None, NaN or pd.NA (nullable integer columns hold pd.NA where a row has no value)."""
    return value is None or bool(pd.isna(value))


def fid_inf_dagger(n_images: Any) -> bool:
    """Whether an FID-infinity from n images is daggered: its smallest subsample has fewer than
    FID_DAGGER_BELOW images, below which FID_N leaves the 1/N line it extrapolates (fid_infinity)."""
    return not is_na(n_images) and fid_infinity.smallest_size(int(n_images)) < FID_DAGGER_BELOW


def _floats(col: pd.Series) -> list[float]:
    return pd.to_numeric(col, errors="coerce").astype(float).tolist()


def mean_text(mean: float, low: float, high: float, decimals: int) -> str:
    """The mean, and ± half the width of its 95% interval when it has one (cell_stats)."""
    if is_na(mean):
        return NA
    text = f"{mean:.{decimals}f}"
    if not is_na(low) and not is_na(high):
        text += f" ± {(high - low) / 2:.{decimals}f}"
    return text


def _interval(r: pd.Series, k: str) -> tuple[float, float]:
    return r.get(f"{k}_lo", math.nan), r.get(f"{k}_hi", math.nan)


def ranks(values: list[float], better: str | None, decimals: int, eligible: list[bool]) -> list[int]:
    """1 for the best value, 2 for the second best (on the shown, rounded values, so shown ties tie)."""
    if better is None:
        return [0] * len(values)
    shown = sorted({round(v, decimals) for v, ok in zip(values, eligible) if ok and not math.isnan(v)},
                   reverse=better == HIGHER)
    best = shown[:2]
    return [best.index(round(v, decimals)) + 1 if ok and not math.isnan(v) and round(v, decimals) in best else 0
            for v, ok in zip(values, eligible)]


def _runs_text(r: pd.Series) -> str:
    if r.get("Source") == REPORTED:
        return "reported"
    if r.get("Source") == RELEASED:
        return f"released: {r.get('Ref')}" if r.get("Ref") else "released"
    if r["Status"] == "missing":
        return "missing"
    text = f"{int(r['Finished'])}/{int(r['Expected'])}"
    if r["Failed"]:
        text += f" ({int(r['Failed'])} failed)"
    return text


def _id_text(r: pd.Series, col: str, refs: dict[str, int]) -> str:
    v = r[col]
    if is_na(v):
        return NA
    if col in BIT_COLUMNS:
        return bits_text(float(v), col)
    text = str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)
    if col == "Method" and r.get("Source") == REPORTED:
        text += f" [R{refs[r['Ref']]}]"
    if col == "Method" and r.get("Source") == RELEASED:
        text += " (released)"
    return text


def bits_text(v: float, col: str) -> str:
    """Bits per image as an integer where whole (power-of-two codebooks), else to one decimal; bits per
    pixel to four decimals (a 16x16 grid of 10-bit codes over 256x256 pixels is 0.0391)."""
    if col == BITS_PER_PIXEL:
        return f"{v:.4f}"
    return str(int(v)) if float(v).is_integer() else f"{v:.1f}"


def _count_text(v: Any) -> str:
    return NA if is_na(v) else str(int(v))


def dataset_table(sub: pd.DataFrame, title: str, refs: dict[str, int]) -> Table:
    """One dataset's rows of the per-dataset frame: identity columns, one column per metric (mean ±
    half its 95% interval; marks from `<k>_rank`), Runs (finished/expected seeds), Images and the
    kind of interval."""
    sub = sub.reset_index(drop=True)
    metrics = metrics_of(sub)
    id_cols = [c for c in ("Method", "Options", "Codebook size", "Preset", "Steps", "Seed", *LAYOUT_COLUMNS,
                           *BIT_COLUMNS) if c in sub.columns]
    eligible = [(s == MEASURED) for s in sub["Source"]]
    italic = [s == REPORTED for s in sub["Source"]]
    cells = [[Cell(_id_text(r, c, refs), italic=italic[i]) for c in id_cols] for i, r in sub.iterrows()]
    for k in metrics:
        m = spec(k)
        rk = (sub[f"{k}_rank"].astype(int).tolist() if f"{k}_rank" in sub
              else ranks(_floats(sub[k]), m.better, m.decimals, eligible))
        for i, r in sub.iterrows():
            n = r.get("fid_n_images")
            base = fid_refs.base_key(k)
            dagger = not is_na(r[k]) and ((base == keys.FID and not is_na(n) and n < FID_DAGGER_BELOW)
                                          or (base == keys.FID_INF and fid_inf_dagger(n)))
            cells[i].append(Cell(mean_text(r[k], *_interval(r, k), m.decimals), rk[i], dagger, italic[i]))
    extra = [c for c in ("Images", "Interval") if c in sub.columns]
    for i, r in sub.iterrows():
        cells[i].append(Cell(_runs_text(r), italic=italic[i]))
        if "Images" in extra:
            cells[i].append(Cell(_count_text(r["Images"]), italic=italic[i]))
        if "Interval" in extra:
            cells[i].append(Cell(str(r["Interval"] or NA), italic=italic[i]))
    columns = ([Column(c, numeric=c in ("Codebook size", "Steps", "Seed", *LAYOUT_COLUMNS, *BIT_COLUMNS))
                for c in id_cols]
               + [Column(fid_refs.label(k), spec(k).better, True) for k in metrics] + [Column("Runs")]
               + [Column("Images", numeric=True)] * ("Images" in extra) + [Column("95% interval")] * ("Interval" in extra))
    return Table(title, columns, cells)


def dataset_tables(per_dataset: pd.DataFrame, refs: dict[str, int]) -> list[Table]:
    return [dataset_table(sub, f"Reconstruction on {dataset}", refs)
            for dataset, sub in per_dataset.groupby("Dataset", sort=False)]


def cross_table(cross: pd.DataFrame, refs: dict[str, int]) -> Table:
    """Methods x datasets for the cross frame's metric, with the same marks as the per-dataset tables."""
    m = spec(cross.attrs["metric"])
    id_cols = [c for c in GROUP_FIELDS.values() if c in cross.columns]
    eligible = [(s == MEASURED) for s in cross["Source"]]
    italic = [s == REPORTED for s in cross["Source"]]
    cells = [[Cell(_id_text(r, c, refs), italic=italic[i]) for c in id_cols] for i, r in cross.iterrows()]
    for d in cross.attrs["datasets"]:
        rk = (pd.to_numeric(cross[f"{d}_rank"], errors="coerce").fillna(0).astype(int).tolist()
              if f"{d}_rank" in cross else ranks(_floats(cross[d]), m.better, m.decimals, eligible))
        n_col = f"{d}_fid_n_images"
        for i, r in cross.iterrows():
            n = r.get(n_col, math.nan) if n_col in cross.columns else math.nan
            dagger = not is_na(r[d]) and not is_na(n) and n < FID_DAGGER_BELOW
            cells[i].append(Cell(mean_text(r[d], r.get(f"{d}_lo", math.nan), r.get(f"{d}_hi", math.nan), m.decimals),
                                 rk[i], dagger, italic[i]))
    summary_cols = [c for c in ("Mean rank", "Resolved wins") if c in cross.columns]
    for i, r in cross.iterrows():
        if "Mean rank" in summary_cols:
            cells[i].append(Cell(NA if is_na(r["Mean rank"]) else f"{r['Mean rank']:.1f}", italic=italic[i]))
        if "Resolved wins" in summary_cols:
            cells[i].append(Cell(_count_text(r["Resolved wins"]), italic=italic[i]))
    columns = ([Column(c, numeric=c in ("Codebook size", "Steps", "Seed")) for c in id_cols]
               + [Column(str(d), numeric=True) for d in cross.attrs["datasets"]]
               + [Column(c, numeric=True) for c in summary_cols])
    return Table(f"{Column(fid_refs.label(m.key), m.better).header} across datasets", columns, cells)
