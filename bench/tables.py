"""Result tables built from the records on disk with pandas: terminal, Markdown, CSV and LaTeX."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import pandas as pd
from tabulate import tabulate

from . import records
from .metrics import keys

# (record metric key, column header, scale, decimals)
COLUMNS = [
    (keys.FID, "rFID ↓", 1.0, 2),
    (keys.PSNR, "PSNR ↑", 1.0, 2),
    (keys.SSIM, "SSIM ↑", 1.0, 4),
    (keys.LPIPS, "LPIPS ↓", 1.0, 4),
    (keys.UTILIZATION, "Usage % ↑", 100.0, 1),
    (keys.PERPLEXITY, "Perplexity", 1.0, 1),
]
TABLE_FORMATS = ("md", "csv", "tex")


def frame(recs: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per record: identity columns, status, and every metric (failed runs keep their row)."""
    rows = []
    for r in recs:
        c = r["config"]
        row = {"Dataset": c["dataset"], "Method": c["method"], "Codebook size": c["codebook_size"],
               "Seed": c["seed"], "Preset": c["preset"], "Steps": c["steps"], "Tokens": r.get("tokens"),
               "Status": r["status"], "run_id": r["run_id"], "train_s": r.get("train_s")}
        for key, header, scale, _ in COLUMNS:
            value = (r.get("metrics") or {}).get(key)
            row[header] = None if value is None else value * scale
        rows.append(row)
    df = pd.DataFrame(rows)
    if len(df):
        df = df.sort_values(["Dataset", "Method", "Codebook size", "Seed"], kind="stable").reset_index(drop=True)
    return df


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Paper layout: one row per (dataset, method, codebook size); metric columns hold the mean over
    finished seeds; failed runs are counted in their own column, never silently dropped."""
    if df.empty:
        return df
    metric_cols = [h for _, h, _, _ in COLUMNS]
    group = ["Dataset", "Method", "Codebook size", "Tokens"]
    done = df[df["Status"] == records.FINISHED]
    means = done.groupby(group, dropna=False)[metric_cols].mean() if len(done) else pd.DataFrame(columns=metric_cols)
    counts = df.groupby(group, dropna=False).agg(
        Seeds=("Status", lambda s: int((s == records.FINISHED).sum())),
        Failed=("Status", lambda s: int((s == records.FAILED).sum())),
    )
    out = counts.join(means, how="left").reset_index()
    return out[group + metric_cols + ["Seeds", "Failed"]]


def _rounded(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for _, header, _, decimals in COLUMNS:
        if header in df:
            df[header] = df[header].map(lambda v, d=decimals: "—" if pd.isna(v) else f"{v:.{d}f}")
    return df


def render(df: pd.DataFrame, fmt: str = "terminal") -> str:
    shown = _rounded(df)
    if fmt == "terminal":
        return tabulate(shown, headers="keys", tablefmt="github", showindex=False)
    if fmt == "md":
        return tabulate(shown, headers="keys", tablefmt="pipe", showindex=False)
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "tex":
        return tabulate(shown, headers="keys", tablefmt="latex_booktabs", showindex=False)
    raise ValueError(f"unknown table format {fmt!r}")


def write_tables(df: pd.DataFrame, out: Path, stem: str = "results") -> list[Path]:
    folder = Path(out) / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in TABLE_FORMATS:
        path = folder / f"{stem}.{fmt}"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(render(df, fmt))
        tmp.replace(path)
        paths.append(path)
    return paths
