"""Intervals and paired comparisons for every cell of the per-dataset frame, from what the run
folders store (per_image.py), added to the frame as columns so every format (and the CSV) has them.

Per row: `<k>_lo`, `<k>_hi` (the 95% interval of metric k; intervals.py says which kind), `Interval`
(its kind in words), `Images` (images per run), `<k>_seeds_needed` (for a row not resolved from its
column's best across seeds: about how many seeds would resolve the difference observed, seeds_needed.py). Per metric column with a direction: `<k>_rank` (1:
the best and every row not resolved from it, which share the mark; 2: the best of the rest; 0)
and one row per comparison (each eligible row against its column's best, paired.py) in the frame
`comparisons`, which the notes, the conclusion and the cross-dataset summary read.

Where `run_bench.py --until-resolved` ran (OUT/until_resolved.json), the comparisons of its rows and
metrics are decided by its group-sequential test (sequential.py) instead of the fixed paired t-test:
the fixed test at the final seed count would ignore the looks that came before it.

Eligible for marks: measured rows only (released checkpoints and published numbers never are).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.evaluation.metrics import keys
from bench.evaluation.metrics.registry import HIGHER, spec
from bench.reporting import feature_bootstrap, fid_infinity_interval, intervals, paired, seeds_needed, sequential
from bench.reporting.frames import GROUP_FIELDS, MEASURED, REPORTED
from bench.reporting.intervals import MIN_SEEDS
from bench.reporting.per_image import RunCache, RunFiles
from bench.runs import records

FEATURE_METRICS = (keys.FID, keys.KID)  # set metrics the stored features can resample


@dataclass
class RowData:
    """One row's finished runs and, with fewer than MIN_SEEDS of them, its bootstrap replicates."""

    seeds: dict[str, dict[int, float]] = field(default_factory=dict)  # metric -> {seed: shown value}
    files: list[RunFiles] = field(default_factory=list)
    replicates: dict[str, np.ndarray] = field(default_factory=dict)  # metric -> (B,) shown units
    n_images: int | None = None

    @property
    def n_seeds(self) -> int:
        return len(self.files)


def _row_runs(row: pd.Series, runs: pd.DataFrame) -> pd.DataFrame:
    ids = str(row.get("run_ids") or "").split()
    if not ids or runs.empty:
        return runs.iloc[0:0]
    return runs[runs["run_id"].isin(ids) & (runs["Status"] == records.FINISHED)]


def _same_images(files: list[RunFiles]) -> bool:
    return bool(files) and all(f.names is not None and files[0].same_images(f) for f in files)


def row_data(row: pd.Series, runs: pd.DataFrame, metrics: list[str], cache: RunCache) -> RowData:
    done = _row_runs(row, runs)
    data = RowData()
    for k in metrics:
        data.seeds[k] = {int(s): float(v) for s, v in zip(done["Seed"], done[k]) if not pd.isna(v)} if k in done else {}
    data.files = [cache.get(str(rid)) for rid in done["run_id"]]
    if not _same_images(data.files):
        return data  # runs of the row on different images: nothing to pair
    data.n_images = len(data.files[0].names)
    image_idx = intervals.resample_indices(data.n_images, intervals.IMAGE_RESAMPLES)
    for k in metrics:
        if all(k in f.values for f in data.files):
            per_image = np.mean([f.values[k] for f in data.files], axis=0) * spec(k).scale
            data.replicates[k] = intervals.mean_replicates(per_image, image_idx)
    # With MIN_SEEDS seeds the interval and the test are across seeds; the (cheap) per-image
    # replicates above stay, for a comparison with a row of fewer seeds; the costly rFID/KID ones are skipped.
    wanted = [k for k in FEATURE_METRICS if k in metrics] if data.n_seeds < MIN_SEEDS else []
    if wanted:
        # the same fixed resamples for every seed's run (equal image counts: the group's n_images)
        reps = [feature_bootstrap.replicates(f.features, f.reference) for f in data.files]
        if all(r is not None for r in reps):
            for k in wanted:
                data.replicates[k] = np.mean([r[k] for r in reps], axis=0) * spec(k).scale
    if data.n_seeds < MIN_SEEDS and keys.FID_INF in metrics:
        inf = [fid_infinity_interval.paired_replicates(f.features, f.reference) for f in data.files]
        if all(r is not None for r in inf):
            data.replicates[keys.FID_INF] = np.mean(inf, axis=0) * spec(keys.FID_INF).scale
    return data


def row_interval(row: pd.Series, data: RowData, k: str) -> intervals.Interval | None:
    if data.n_seeds >= MIN_SEEDS:
        return intervals.t_interval(list(data.seeds.get(k, {}).values()))
    if k in data.replicates and not pd.isna(row[k]):
        return intervals.bootstrap_interval(float(row[k]), data.replicates[k], data.n_images or 0)
    return None


def compare(best: tuple[float, RowData], other: tuple[float, RowData], k: str,
            state: sequential.State | None = None) -> paired.Comparison:
    """`other` against the column's best: across seeds when both have MIN_SEEDS (by the sequential
    design of the --until-resolved `state` when it covers the pair), else over images."""
    (b_est, b), (o_est, o) = best, other
    if b.n_seeds >= MIN_SEEDS and o.n_seeds >= MIN_SEEDS:
        if state is not None:
            return sequential.compare(b.seeds[k], o.seeds[k], state.design, state.seed_order)
        return paired.across_seeds(b.seeds[k], o.seeds[k])
    if k in b.replicates and k in o.replicates and b.files[0].same_images(o.files[0]):
        return paired.over_images(b_est, o_est, b.replicates[k], o.replicates[k], b.n_images or 0)
    return paired.Comparison(paired.UNTESTED, False, test="no per-image values or features on the same images, "
                                                          f"and fewer than {MIN_SEEDS} seeds")


def _interval_text(data: RowData, row: pd.Series) -> str:
    if row.get("Finished", 0) in (0, None) or pd.isna(row.get("Finished")):
        return ""
    if data.n_seeds >= MIN_SEEDS:
        return f"t, {data.n_seeds} seeds"
    if data.replicates:
        return f"images, {data.n_seeds} seed" + ("s" if data.n_seeds > 1 else "")
    return ""


def row_key(row: pd.Series) -> dict[str, Any]:
    return {c: row[c] for c in ("Dataset", *GROUP_FIELDS.values(), "Source") if c in row.index}


def add(per_dataset: pd.DataFrame, runs: pd.DataFrame, out: Path | str,
        metrics: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the frame with interval, image-count and rank columns; one row per comparison)."""
    df = per_dataset.copy()
    cache = RunCache(out)
    data = [row_data(r, runs, metrics, cache) if r.get("Source") != REPORTED else RowData()
            for _, r in df.iterrows()]
    for k in metrics:
        ivs = [row_interval(r, d, k) for (_, r), d in zip(df.iterrows(), data)]
        df[f"{k}_lo"] = [iv.low if iv else math.nan for iv in ivs]
        df[f"{k}_hi"] = [iv.high if iv else math.nan for iv in ivs]
    df["Interval"] = [_interval_text(d, r) for (_, r), d in zip(df.iterrows(), data)]
    df["Images"] = pd.array([d.n_images if d.n_images else (None if pd.isna(r.get("n_images", math.nan))
                                                            else int(r["n_images"]))
                             for (_, r), d in zip(df.iterrows(), data)], dtype="Int64")
    comparisons: list[dict[str, Any]] = []
    state = sequential.load(out)
    for k in metrics:
        df[f"{k}_rank"] = 0
        df[f"{k}_seeds_needed"] = pd.array([None] * len(df), dtype="Int64")
        better = spec(k).better
        if better is None:
            continue
        for _, sub in df.groupby("Dataset", sort=False):
            comparisons += _mark_column(df, sub, data, k, better, state)
    return _ordered(df, metrics), pd.DataFrame(comparisons)


def _state_for(state: sequential.State | None, a: pd.Series, b: pd.Series, k: str) -> sequential.State | None:
    """The loop's state when it covers both rows in metric k, else None."""
    if state is None or a.get("Source") != MEASURED or b.get("Source") != MEASURED:
        return None
    covered = all(state.covers(r["Dataset"], r["Method"], r.get("Codebook size"), k) for r in (a, b))
    return state if covered else None


def _needed(best: RowData, other: RowData, c: paired.Comparison, k: str) -> dict[str, Any]:
    """The seeds-needed columns of a comparison: an estimate unless the METHODS' difference is resolved
    (across seeds) already."""
    if c.kind == paired.SEEDS and c.resolved:
        return {"seeds_needed": None, "seeds_needed_note": "", "seeds_shared": c.n}
    est = seeds_needed.estimate(best.seeds.get(k, {}), other.seeds.get(k, {}))
    return {"seeds_needed": est.seeds, "seeds_needed_note": seeds_needed.phrase(est, k, spec(k).decimals),
            "seeds_shared": est.n}


def _mark_column(df: pd.DataFrame, sub: pd.DataFrame, data: list[RowData], k: str, better: str,
                 state: sequential.State | None = None) -> list[dict[str, Any]]:
    """Set `<k>_rank` and `<k>_seeds_needed` for one dataset's rows; the comparisons made, as dicts."""
    elig = [i for i in sub.index if sub.at[i, "Source"] == MEASURED and not pd.isna(sub.at[i, k])]
    if len(elig) < 2:
        return []
    sign = -1.0 if better == HIGHER else 1.0
    order = sorted(elig, key=lambda i: sign * float(sub.at[i, k]))
    best = order[0]
    found, tie = [], [best]
    for i in order[1:]:
        c = compare((float(sub.at[best, k]), data[best]), (float(sub.at[i, k]), data[i]), k,
                    _state_for(state, sub.loc[best], sub.loc[i], k))
        needed = _needed(data[best], data[i], c, k)
        if needed["seeds_needed"] is not None:
            df.at[i, f"{k}_seeds_needed"] = needed["seeds_needed"]
        found.append({**row_key(sub.loc[i]), "metric": k, "best_method": sub.at[best, "Method"],
                      "best_codebook_size": sub.at[best, "Codebook size"] if "Codebook size" in sub else None,
                      **{f"best_{c}": sub.at[best, c] for c in ("Options", "Preset", "Steps") if c in sub},
                      "best_seeds": data[best].n_seeds, "seeds": data[i].n_seeds, **asdict(c), **needed})
        if not c.resolved:
            tie.append(i)
    if not any(f["kind"] != paired.UNTESTED for f in found):
        return found  # nothing could be tested: no marks rather than marks by value
    for i in tie:
        df.at[i, f"{k}_rank"] = 1
    rest = [i for i in order if i not in tie]
    decimals = spec(k).decimals
    for i in rest:  # the best of the rest, and any row showing the same value
        if rest and round(float(sub.at[i, k]), decimals) == round(float(sub.at[rest[0], k]), decimals):
            df.at[i, f"{k}_rank"] = 2
    return found


def _ordered(df: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Each metric's interval and rank beside its mean and std; Images and Interval after the counts."""
    stat_cols = ({c for k in metrics for c in (f"{k}_lo", f"{k}_hi", f"{k}_rank", f"{k}_seeds_needed")}
                 | {"Images", "Interval"})
    cols: list[str] = []
    for c in df.columns:
        if c in stat_cols:
            continue
        cols.append(c)
        if c.endswith("_std") and c[:-4] in metrics:
            cols += [f"{c[:-4]}_lo", f"{c[:-4]}_hi", f"{c[:-4]}_rank", f"{c[:-4]}_seeds_needed"]
        if c == "Status":
            cols += ["Images", "Interval"]
    out = df[cols]
    out.attrs = dict(df.attrs)
    return out
