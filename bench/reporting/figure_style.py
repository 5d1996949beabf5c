"""What every figure shares: the matplotlib backend and style, atomic PNG + SVG saving under
OUT/figures/, file-name-safe stems, run labels and one colour per method."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on the machines this runs on; set before pyplot is imported
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from bench.core.atomic import atomic_path
from bench.runs import records

FIGURES = "figures"
EXTENSIONS = ("png", "svg")

plt.rcParams.update({"figure.constrained_layout.use": True, "figure.dpi": 100, "savefig.dpi": 120, "font.size": 9,
                     "axes.grid": True, "grid.alpha": 0.3, "svg.fonttype": "none", "svg.hashsalt": "vqbench"})


def save(fig: plt.Figure, folder: Path, stem: str) -> list[Path]:
    """PNG and SVG, each through a temp file and a rename so a reader never sees half a figure."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in EXTENSIONS:
        path = folder / f"{stem}.{ext}"
        with atomic_path(path, suffix=f".{ext}") as tmp:
            fig.savefig(tmp, format=ext, bbox_inches="tight", metadata={"Date": None} if ext == "svg" else None)
        paths.append(path)
    plt.close(fig)
    return paths


def safe(name: Any) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(name))


def run_label(row: pd.Series, with_seed: bool = True) -> str:
    options = row.get("Options")  # set where runs of the method differ in options (frames.PROTOCOL_FIELDS)
    recipe = f" ({options})" if isinstance(options, str) and options else ""
    text = f"{row['Method']}{recipe} K={int(row['Codebook size'])}"
    return text + (f" s{int(row['Seed'])}" if with_seed and not pd.isna(row.get("Seed")) else "")


def finished(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["Status"] == records.FINISHED] if len(runs) else runs


def styles(runs: pd.DataFrame) -> dict[tuple[str, int], dict[str, Any]]:
    """One colour per method, one line style per codebook size, stable across figures."""
    methods = sorted(set(runs["Method"]))
    sizes = sorted({int(k) for k in runs["Codebook size"]})
    colors = plt.get_cmap("tab10")
    dashes = ["-", "--", ":", "-."]
    return {(m, k): {"color": colors(i % 10), "linestyle": dashes[j % len(dashes)]}
            for i, m in enumerate(methods) for j, k in enumerate(sizes)}


def error_bars(g: pd.DataFrame, m: str) -> np.ndarray:
    """(2, n) distances below and above each mean: per row the table's 95% interval (`<m>_lo`,
    `<m>_hi`, asymmetric for rFID and KID), else the std over seeds; 0 where a row has neither."""
    mean = g[m].to_numpy(dtype=float)
    nan = np.full_like(mean, np.nan)
    std = g[f"{m}_std"].to_numpy(dtype=float) if f"{m}_std" in g.columns else nan
    lo = mean - (g[f"{m}_lo"].to_numpy(dtype=float) if f"{m}_lo" in g.columns else nan)
    hi = (g[f"{m}_hi"].to_numpy(dtype=float) if f"{m}_hi" in g.columns else nan) - mean
    has = np.isfinite(lo) & np.isfinite(hi)
    bars = np.vstack([np.where(has, lo, std), np.where(has, hi, std)])
    return np.nan_to_num(np.clip(bars, 0.0, None))


def legend_or_note(ax: Any, has_values: bool, metric_label: str) -> None:
    """The panel's legend, or, on a panel with nothing drawn, a line saying the records hold no such
    metric (an empty axis would look like a plotting failure)."""
    if has_values:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, f"no {metric_label} in these records", ha="center", va="center", transform=ax.transAxes)
