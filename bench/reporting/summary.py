"""The `Summary` of the records under a results folder: every frame the tables, figures and report
are drawn from, built once by `build`.
"""
from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.evaluation.metrics import keys
from bench.evaluation.metrics.registry import load_all, spec
from bench.reporting import cell_stats, frames
from bench.reporting.frames import DEFAULT_GROUP_BY, GROUP_FIELDS
from bench.runs import records


@dataclass
class Summary:
    out: Path  # the results folder the records were read from (run folders: out/runs/<run_id>/)
    runs: pd.DataFrame  # one row per record (frames.runs_frame), after the method/dataset filters
    per_dataset: pd.DataFrame  # one row per dataset and group (frames.dataset_frame), reported rows included
    reported: pd.DataFrame | None  # the published rows (bench.reporting.reported), None when not asked for
    failures: pd.DataFrame  # the failed runs of `runs`, for the footnotes
    cross: pd.DataFrame | None  # methods x datasets for one metric (cross_frame); None for one dataset
    metrics: list[str]  # the metric keys of the tables, in column order
    # each eligible row against its column's best (cell_stats.add: kind, resolved, diff, interval, p)
    comparisons: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def empty(self) -> bool:
        return self.per_dataset.empty


def cross_frame(per_dataset: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Methods as rows, datasets as column groups, one metric: `<dataset>` holds the mean and
    `<dataset>_std` the std. Built from the per-dataset frame, so it agrees with those tables."""
    if per_dataset.empty or metric not in per_dataset.columns:
        raise ValueError(f"no column {metric!r} in the summary; metrics there: "
                         f"{', '.join(frames.metrics_of(per_dataset))}")
    row_cols = [c for c in GROUP_FIELDS.values() if c in per_dataset.columns] + ["Source", "Ref"]
    datasets = list(dict.fromkeys(per_dataset["Dataset"]))
    rows: dict[tuple, dict[str, Any]] = {}
    for _, r in per_dataset.iterrows():
        key = tuple(r[c] for c in row_cols)
        row = rows.setdefault(key, dict(zip(row_cols, key)))
        row[r["Dataset"]] = r[metric]
        row[f"{r['Dataset']}_std"] = r.get(f"{metric}_std", math.nan)
        for part in ("lo", "hi", "rank"):
            if f"{metric}_{part}" in per_dataset.columns:
                row[f"{r['Dataset']}_{part}"] = r[f"{metric}_{part}"]
        if metric == keys.FID:
            row[f"{r['Dataset']}_fid_n_images"] = r.get("fid_n_images", math.nan)
    out = pd.DataFrame(list(rows.values()))
    for d in datasets:
        for col in (d, f"{d}_std"):
            if col not in out:
                out[col] = math.nan
    out = out.sort_values([c for c in ("Source", "Method", "Codebook size") if c in out.columns],
                          key=lambda s: s.astype(str), kind="stable").reset_index(drop=True)
    out = _rank_summary(out, datasets, metric)
    out.attrs["metric"] = metric
    out.attrs["datasets"] = datasets
    return out


def _rank_summary(cross: pd.DataFrame, datasets: list[str], metric: str) -> pd.DataFrame:
    """`Mean rank`: per measured row, its rank by value (1 best; equal values share the lower rank)
    in each dataset where it has a value, averaged; `Resolved wins`: datasets where it alone holds
    the best mark (cell_stats: resolved from every other row). Published and released rows: none."""
    better = spec(metric).better
    measured = cross["Source"] == frames.MEASURED
    if better is None or not measured.any():
        return cross
    ranked = pd.DataFrame({d: cross[d].where(measured).rank(method="min", ascending=better != "higher")
                           for d in datasets})
    cross["Mean rank"] = ranked.mean(axis=1, skipna=True).where(measured)
    wins = pd.Series(0, index=cross.index)
    for d in datasets:
        if f"{d}_rank" in cross.columns:
            best = cross[f"{d}_rank"].fillna(0).astype(int) == 1
            if best.sum() == 1:
                wins += best.astype(int)
    cross["Resolved wins"] = wins.where(measured)
    return cross


def cross_metric(per_dataset: pd.DataFrame, preferred: Sequence[str] = (keys.FID, keys.PSNR)) -> str:
    """The metric of the cross-dataset table: rFID when any row has one, else PSNR, else the first."""
    for k in preferred:
        if k in per_dataset.columns and per_dataset[k].notna().any():
            return k
    ms = frames.metrics_of(per_dataset)
    return ms[0] if ms else keys.PSNR


def check_metrics(runs: pd.DataFrame, metrics: Sequence[str] | None) -> None:
    """A metric name must be registered (bench.evaluation.metrics.registry), derive from a registered
    one (utilization_adj) or appear in some record; else a ValueError with the closest names."""
    registry = load_all()
    for key in metrics or []:
        if key in registry or spec(key).better is not None:
            continue
        if key in runs.columns and runs[key].notna().any():
            continue
        seen = [c for c in runs.columns if c not in frames.ID_COLUMNS and c != key and runs[c].notna().any()]
        seen += registry.names()
        close = difflib.get_close_matches(key, seen, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(dict.fromkeys(seen))}"
        raise ValueError(f"unknown metric {key!r}{hint}")


def build(out: Path | str, methods: Sequence[str] | None = None, datasets: Sequence[str] | None = None,
          metrics: Sequence[str] | None = None, group_by: Sequence[str] = DEFAULT_GROUP_BY,
          with_reported: bool = False) -> Summary:
    """The Summary of the records under `out`, for these methods, datasets and metric columns."""
    from bench.reporting import reported as reported_mod

    runs = frames.runs_frame(records.iter_records(Path(out)), metrics)
    check_metrics(runs, metrics)
    if methods and len(runs):
        runs = runs[runs["Method"].isin(methods)]
    if datasets and len(runs):
        runs = runs[runs["Dataset"].isin(datasets)]
    metric_cols = frames.metric_columns(runs, metrics)
    rep = None
    if with_reported:
        shown = list(datasets) if datasets else sorted(set(runs["Dataset"])) if len(runs) else None
        rep = reported_mod.reported_rows(datasets=shown, methods=methods, metrics=metric_cols)
    per_dataset = frames.dataset_frame(runs, metric_cols, group_by, methods=methods, reported=rep)
    comparisons = pd.DataFrame()
    if len(per_dataset):
        per_dataset, comparisons = cell_stats.add(per_dataset, runs, out, metric_cols)
    cross = None
    if len(per_dataset) and per_dataset["Dataset"].nunique() > 1:
        cross = cross_frame(per_dataset, cross_metric(per_dataset))
    failures = runs[runs["Status"] == records.FAILED] if len(runs) else runs
    return Summary(Path(out), runs, per_dataset, rep, failures, cross, metric_cols, comparisons)
