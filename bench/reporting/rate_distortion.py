"""The rate-distortion figure: rFID, PSNR and LPIPS against bits per image, per dataset.

One line per method (and recipe) through the budgets its records hold; each point is a row of the
per-dataset tables: its mean over seeds, and as error bars the 95% interval the tables print
(cell_stats.add computes it; figure_style.error_bars reads it), so the figure and the tables never
disagree. A method with one budget is one point (a line needs two). The x axis is log2, as budgets
are compared in ratios (the field's habit: bits double when K squares).

Only rows whose records hold a bit budget (record["bits_per_image"]) are drawn: older records have
none, and it is never inferred from the method.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from bench.evaluation.metrics import keys
from bench.evaluation.metrics.registry import spec
from bench.reporting.figure_style import FIGURES, error_bars, legend_or_note, plt, safe, save
from bench.reporting.frames import BITS, GROUP_FIELDS, MEASURED

STEM = "rate_distortion"
# LPIPS or ST-LPIPS: the evaluator records one of them (keys.py); the figure shows whichever has values.
METRICS = (keys.FID, keys.PSNR, (keys.LPIPS, keys.ST_LPIPS))
# The identity of a line: every row key but K (bits follow from K), so recipes, presets and step
# counts that the tables keep apart are never joined into one line.
LINE_FIELDS = [c for c in GROUP_FIELDS.values() if c != "Codebook size"]


@dataclass(frozen=True)
class Line:
    """One method's points in one panel: x = bits per image, y = the tables' means, `bars` (2, n) the
    distances below and above each mean to its interval's ends, `kinds` what each bar is."""

    name: str
    bits: np.ndarray
    mean: np.ndarray
    bars: np.ndarray
    kinds: tuple[str, ...]


def drawable(per_dataset: pd.DataFrame) -> pd.DataFrame:
    """The measured rows with a finished run and a recorded bit budget."""
    if per_dataset.empty or BITS not in per_dataset.columns:
        return per_dataset.iloc[0:0]
    bits = pd.to_numeric(per_dataset[BITS], errors="coerce")
    return per_dataset[(per_dataset["Source"] == MEASURED) & (per_dataset["Finished"].fillna(0) > 0) & bits.gt(0)]


def shown_metrics(rows: pd.DataFrame) -> list[str]:
    """rFID, PSNR and the LPIPS the records hold (ST-LPIPS where standard LPIPS was not measured)."""
    shown = []
    for choice in METRICS:
        options = choice if isinstance(choice, tuple) else (choice,)
        present = [k for k in options if k in rows.columns and rows[k].notna().any()]
        shown.append(present[0] if present else options[0])
    return shown


def _kind(row: pd.Series, m: str) -> str:
    """The words for one point's bar: the row's interval kind (cell_stats' Interval column), else the
    std over seeds that error_bars falls back to, else none."""
    if pd.notna(row.get(f"{m}_lo")) and pd.notna(row.get(f"{m}_hi")):
        text = str(row.get("Interval") or "")
        if text.startswith("t,"):
            return f"95% t-interval over {text.split(', ', 1)[1]}"
        if text.startswith("images,"):
            return f"95% bootstrap interval over the validation images ({text.split(', ', 1)[1]})"
        return "95% interval"
    return "std over seeds" if pd.notna(row.get(f"{m}_std")) else "none where a row has no interval"


def lines(rows: pd.DataFrame, m: str) -> list[Line]:
    """One dataset's drawable rows as lines of metric `m`, sorted by bits within each line."""
    if m not in rows.columns:
        return []
    by = [c for c in LINE_FIELDS if c in rows.columns]
    out = []
    for key, g in rows[rows[m].notna()].groupby(by, sort=True, dropna=False):
        g = g.assign(_bits=pd.to_numeric(g[BITS])).sort_values("_bits")
        name = _name(dict(zip(by, key if isinstance(key, tuple) else (key,))))
        out.append(Line(name, g["_bits"].to_numpy(float), g[m].to_numpy(float), error_bars(g, m),
                        tuple(_kind(r, m) for _, r in g.iterrows())))
    return out


def _name(key: dict[str, object]) -> str:
    """A line's legend: the method, its recipe, and the preset, steps or seed where rows differ in them."""
    words = [str(key["Method"])] + ([str(key["Options"])] if key.get("Options") else [])
    words += [f"{c.lower()} {key[c]}" for c in ("Preset", "Steps", "Seed") if c in key and not pd.isna(key[c])]
    return " ".join(words)


def caption(dataset: str, per_metric: dict[str, list[Line]]) -> str:
    """What the figure plots, what its bars are and which panels are empty, for the report's alt text
    and caption."""
    labels = ", ".join(spec(m).label for m in per_metric)
    drawn = [line for got in per_metric.values() for line in got]
    kinds = "; ".join(sorted({k for line in drawn for k in line.kinds})) or "none"
    empty = [spec(m).label for m, got in per_metric.items() if not got]
    return (f"Rate-distortion on {dataset}: {labels} against bits per image (log2 axis), one line per method "
            f"through its budgets, each point the mean over seeds of a table row; error bars: {kinds}, "
            "as the tables' ± (a method with one budget is one point)."
            + (f" No {' or '.join(empty)} in these records: {'that panel is' if len(empty) == 1 else 'those panels are'} "
               "empty." if empty else ""))


def figures(per_dataset: pd.DataFrame, out: Path) -> tuple[list[Path], dict[str, str]]:
    """Per dataset with drawable rows: the figure's PNG and SVG paths, and {stem: caption}."""
    paths: list[Path] = []
    captions: dict[str, str] = {}
    rows_all = drawable(per_dataset)
    for dataset, rows in rows_all.groupby("Dataset", sort=True):
        shown = shown_metrics(rows)
        fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 3.4), squeeze=False)
        per_metric = {m: lines(rows, m) for m in shown}
        names = sorted({line.name for got in per_metric.values() for line in got})
        colors = plt.get_cmap("tab10")  # one colour per line in every panel, even where one lacks a metric
        for ax, m in zip(axes[0], shown):
            got = per_metric[m]
            for line in got:
                ax.errorbar(line.bits, line.mean, yerr=line.bars, marker="o", capsize=3, label=line.name,
                            color=colors(names.index(line.name) % 10))
            _bits_axis(ax, rows)
            ax.set_ylabel(spec(m).header())
            legend_or_note(ax, bool(got), spec(m).label)
        fig.suptitle(f"Rate-distortion on {dataset} (error bars: the tables' 95% intervals)")
        stem = f"{STEM}_{safe(dataset)}"
        paths += save(fig, Path(out) / FIGURES, stem)
        captions[stem] = caption(str(dataset), per_metric)
    return paths, captions


def _bits_axis(ax: plt.Axes, rows: pd.DataFrame) -> None:
    """log2 x axis labelled in plain bits. Budgets within a few octaves would leave a log axis with one
    or two labelled ticks (an equal-bit grid's 512 to 527: none), so there minor ticks are labelled too."""
    ax.set_xscale("log", base=2)
    ax.set_xlabel("bits per image")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    bits = pd.to_numeric(rows[BITS]).to_numpy(float)
    span = bits.max() / bits.min()
    if span < 2:
        ax.set_xlim(bits.min() / 1.15, bits.max() * 1.15)
        ax.xaxis.set_minor_locator(LogLocator(base=2, subs=(1.0, 1.125, 1.25, 1.5, 1.75)))
        ax.xaxis.set_minor_formatter(plain)
    elif span < 16:
        ax.xaxis.set_minor_locator(LogLocator(base=2, subs=(1.5,)))
        ax.xaxis.set_minor_formatter(plain)
    else:
        ax.xaxis.set_minor_formatter(NullFormatter())


__all__ = ["Line", "caption", "drawable", "figures", "lines", "shown_metrics"]
