"""Data frames built from records: one row per run (`runs_frame`) and, per dataset, one row per
group of runs (`dataset_frame`: means and sample stds over seeds, run counts, missing grid cells).

Metric values are scaled as the tables show them (utilisation in percent); how a metric is scaled,
labelled and compared comes from the metric registry (bench.evaluation.metrics.registry).
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from bench.core.errors import UserError
from bench.evaluation.metrics import keys
from bench.evaluation.metrics.registry import spec
from bench.reporting import fid_reference_columns as fid_refs
from bench.reporting.run_options import option_flags, options_labels
from bench.runs import records

# The seed paper's column order. Of LPIPS and ST-LPIPS (the evaluator sets one of them), a column no
# record has a value for is dropped; with neither anywhere, the LPIPS column stays, empty.
DEFAULT_METRICS = (keys.FID, keys.FID_INF, keys.FD_DINOV2, keys.CMMD, keys.PSNR, keys.SSIM, keys.LPIPS, keys.ST_LPIPS,
                   keys.UTILIZATION, keys.PERPLEXITY, keys.ENTROPY_BITS, keys.ENTROPY_RATIO)
OPTIONAL_METRICS = (keys.LPIPS, keys.ST_LPIPS)
# Shown by default only when some record has a value: records written before the code entropy (vqbench
# 0.1), rFID-infinity, FD-DINOv2 or CMMD (which need --metric-weights) was recorded keep the table
# layout they had rather than gaining empty columns.
WHEN_RECORDED = (keys.ENTROPY_BITS, keys.ENTROPY_RATIO, keys.FID_INF, keys.FD_DINOV2, keys.CMMD)

# Config fields a row may be keyed by (--group-by). Dataset always splits tables; seeds are averaged
# unless "seed" is one of the keys.
GROUP_FIELDS = {"method": "Method", "options": "Options", "codebook_size": "Codebook size", "preset": "Preset",
                "steps": "Steps", "seed": "Seed"}
DEFAULT_GROUP_BY = ("method", "codebook_size")
# Never averaged together silently: added to the row key whenever they vary within a dataset. Options
# are the method and dataset options in which runs of one method differ (`options_labels`): a method
# run with two recipes (vqct's loss=official and loss=standard) is two rows, never one mean.
PROTOCOL_FIELDS = ("options", "preset", "steps")
# Where a row's numbers come from. Measured: runs vqbench trained and evaluated. Released: a released
# checkpoint evaluated by vqbench (record["source"] == "released", from `run_bench.py eval
# --checkpoint`): measured the same way, but not trained under this protocol, so its rows form their
# own group and, like reported (published) rows, take no part in best/second marks.
MEASURED, RELEASED, REPORTED = "measured", "released", "reported"

# How many codes one image becomes (see docs/results.md, "Positions and indices"): code positions
# (the latent grid, record["tokens"]) and code indices (positions x indices per position,
# record["indices_per_image"]; VQCT emits top_k + 1 per position). Records written before the
# second was recorded leave it empty: it is never inferred from the method.
POSITIONS, INDICES = "Positions", "Indices per image"
LAYOUT_COLUMNS = (POSITIONS, INDICES)
# The bit budget of one image (record["bits_per_image"]: positions x the sum over index levels of log2
# of that level's codebook size) and per pixel, beside the indices: a 3-index VQCT and a 1-index VQGAN
# at one K spend different budgets. Shown only when some record has a value, so tables of records
# written before they were recorded keep their layout; never inferred from the method.
BITS, BITS_PER_PIXEL = "Bits per image", "Bits per pixel"
BIT_COLUMNS = (BITS, BITS_PER_PIXEL)
# Budgets this close count as equal (bench.runs.bit_budget.TOLERANCE: what --bits-per-image accepts).
EQUAL_BITS = 0.05

ID_COLUMNS = {"Dataset", "Method", "Options", "Codebook size", "Seed", "Preset", "Steps", POSITIONS, INDICES, BITS,
              BITS_PER_PIXEL, "Status",
              "Error", "run_id", "wall_s", "train_s", "fid_n_images", "n_images", "Source", "Checkpoint",
              "option_flags", "bits_budget"}


def _fid_images(record: dict[str, Any]) -> float | None:
    """How many images the run's FID used: protocol["fid"]["n_images"], else the evaluated count."""
    proto = record.get("protocol") or {}
    fid = proto.get("fid")
    if isinstance(fid, dict) and fid.get("n_images") is not None:
        return float(fid["n_images"])
    if (record.get("metrics") or {}).get(keys.FID) is not None and proto.get("n_images") is not None:
        return float(proto["n_images"])
    return None


def runs_frame(recs: Iterable[dict[str, Any]], metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per record: identity, status, error, run folder and every metric (scaled for display).
    Failed runs keep their row with empty metrics."""
    recs = list(recs)
    rows = []
    for r, options in zip(recs, options_labels(recs)):
        c = r.get("config") or {}
        # rFID, rFID-infinity and KID of a reference other than val go to their own columns
        m = fid_refs.split_by_reference(r.get("metrics") or {}, fid_refs.record_reference(r))
        row = {"Dataset": c.get("dataset"), "Method": c.get("method"), "Options": options,
               "option_flags": option_flags(c), "Codebook size": c.get("codebook_size"), "Seed": c.get("seed"),
               "Preset": c.get("preset"), "Steps": c.get("steps"), POSITIONS: r.get("tokens"),
               INDICES: r.get("indices_per_image"), BITS: r.get("bits_per_image"),
               BITS_PER_PIXEL: r.get("bits_per_pixel"), "bits_budget": r.get("bits_budget"),
               "Status": r.get("status"), "Error": r.get("error"),
               "run_id": r.get("run_id"), "wall_s": r.get("wall_s"), "train_s": r.get("train_s"),
               "fid_n_images": _fid_images(r), "n_images": (r.get("protocol") or {}).get("n_images"),
               "Source": RELEASED if r.get("source") == RELEASED else MEASURED,
               "Checkpoint": ((r.get("checkpoint") or {}).get("kind") if r.get("source") == RELEASED else None)}
        wanted = list(metrics) if metrics else list(dict.fromkeys(list(DEFAULT_METRICS) + list(m)))
        if metrics:  # a reference metric asked for brings its columns of every reference
            wanted += [k for k in m if fid_refs.base_key(k) in metrics and k not in wanted]
        for key in wanted:
            value = m.get(key)
            row[key] = float(value) * spec(key).scale if isinstance(value, (int, float)) else math.nan
        rows.append(row)
    df = pd.DataFrame(rows)
    if len(df):
        order = ["Dataset", "Method", "Options", "Codebook size", "Seed"]
        df = df.sort_values(order, kind="stable").reset_index(drop=True)
    return df


def metric_columns(runs: pd.DataFrame, metrics: Sequence[str] | None) -> list[str]:
    """The metric columns of the tables: those asked for, else the default ones the records have; after
    each reference metric (rFID, rFID-infinity, KID), its columns of other FID references
    (fid_reference_columns), and its val column only where some record has a val value or no other
    reference has one."""
    if metrics:  # asked for: kept even where empty, its other references' columns added
        return _with_reference_columns(list(metrics), runs, keep=True)
    if runs.empty:
        return [k for k in DEFAULT_METRICS if k != keys.ST_LPIPS and k not in WHEN_RECORDED]
    out = [k for k in DEFAULT_METRICS if k in runs.columns
           and (k not in WHEN_RECORDED or runs[k].notna().any())]
    has = {k for k in OPTIONAL_METRICS if k in runs.columns and runs[k].notna().any()} or {keys.LPIPS}
    return _with_reference_columns([k for k in out if k not in OPTIONAL_METRICS or k in has], runs)


def _with_reference_columns(cols: list[str], runs: pd.DataFrame, keep: bool = False) -> list[str]:
    out: list[str] = []
    for k in cols:
        others = [c for c in fid_refs.variants(k, runs.columns) if runs[c].notna().any()]
        if keep or not others or k not in runs.columns or runs[k].notna().any():
            out.append(k)
        out += [c for c in others if c not in cols]
    return out


def _grid_keys(ddf: pd.DataFrame, cols: list[str], groups: dict[tuple, Any], methods: Sequence[str] | None) -> None:
    """Add (as None) the cells of the method x codebook-size grid that have no record at all."""
    mi, ki = cols.index("Method"), cols.index("Codebook size")
    all_methods = sorted(set(ddf["Method"]) | set(methods or []))
    others = {tuple(v for i, v in enumerate(k) if i not in (mi, ki)) for k in groups}
    sizes = sorted(set(ddf["Codebook size"]))
    fixed = _fixed_sizes(all_methods)
    own_only = {k for k in sizes if set(ddf.loc[ddf["Codebook size"] == k, "Method"]) <= set(fixed)}
    for m, k, rest in itertools.product(all_methods, sizes, sorted(others, key=str)):
        if _has_equal_budget_run(ddf, m, k) or fixed.get(m, k) != k or (m not in fixed and k in own_only):
            continue  # a fixed codebook (leech) is a grid of its own K: no missing cells across it
        key = list(rest)
        for i, v in sorted(((mi, m), (ki, k))):
            key.insert(i, v)
        groups.setdefault(tuple(key), None)


def _fixed_sizes(names: Sequence[str]) -> dict[str, int]:
    """{method: K} for the registered methods whose codebook is fixed (Quantizer.fixed_codebook_size at
    their default options); methods this version does not know have none."""
    try:
        from methods import registry
    except ImportError:  # reading records without the methods package: no method is known to be fixed
        return {}
    out = {}
    for name in names:
        try:
            k = registry.entry(str(name)).cls.fixed_codebook_size(registry.build_options(str(name)))
        except (UserError, KeyError, TypeError):
            continue
        if k is not None:
            out[str(name)] = int(k)
    return out


def _has_equal_budget_run(ddf: pd.DataFrame, method: str, k: Any) -> bool:
    """Whether `method` has a run whose recorded bits per image equal (within EQUAL_BITS) those of another
    method's run at codebook size k: in an equal-bit grid (--bits-per-image) every method has its own K,
    and its other cells are not missing. False where budgets were not recorded."""
    if BITS not in ddf or ddf[BITS].isna().all():
        return False
    bits = pd.to_numeric(ddf[BITS], errors="coerce")
    at_k = bits[(ddf["Codebook size"] == k) & (ddf["Method"] != method)].dropna()
    mine = bits[ddf["Method"] == method].dropna()
    return any(abs(m / b - 1) <= EQUAL_BITS for b in at_k for m in mine)


def _layout_value(col: pd.Series) -> int | None:
    """The group's positions (or indices) per image: the value its runs recorded, None when none
    recorded one or they disagree (runs of one method and K with different method options)."""
    values = set(pd.to_numeric(col, errors="coerce").dropna().astype(int))
    return values.pop() if len(values) == 1 else None


def _bits_value(col: pd.Series) -> float | None:
    """The group's bits per image (or pixel): as `_layout_value`, for a float that runs of one
    configuration record identically."""
    values = set(pd.to_numeric(col, errors="coerce").dropna().astype(float))
    return values.pop() if len(values) == 1 else None


def _group_row(g: pd.DataFrame | None, expected_n: int, metric_cols: list[str]) -> dict[str, Any]:
    """Counts, status, means and stds of one group of runs (None: a grid cell with no record)."""
    if g is None:
        row: dict[str, Any] = {POSITIONS: None, INDICES: None, BITS: None, BITS_PER_PIXEL: None, "Finished": 0, "Failed": 0, "Expected": expected_n,
                               "Status": "missing", "run_ids": ""}
        row.update({k: math.nan for k in metric_cols}, **{f"{k}_std": math.nan for k in metric_cols})
        row["fid_n_images"] = row["n_images"] = math.nan
        return row
    done = g[g["Status"] == records.FINISHED]
    n_ok, n_failed = len(done), int((g["Status"] == records.FAILED).sum())
    row = {**{c: _layout_value(g[c]) for c in LAYOUT_COLUMNS}, **{c: _bits_value(g[c]) for c in BIT_COLUMNS if c in g},
           "Finished": n_ok, "Failed": n_failed,
           "Expected": max(expected_n, len(g)), "run_ids": " ".join(g["run_id"].astype(str))}
    row["Status"] = ("ok" if n_ok >= row["Expected"] else "failed" if n_ok == 0 and n_failed
                     else "partial" if n_ok else "unfinished")
    for k in metric_cols:
        vals = done[k].dropna() if k in done else pd.Series(dtype=float)
        row[k] = float(vals.mean()) if len(vals) else math.nan
        row[f"{k}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else math.nan
    fid_cols = [c for c in done.columns if fid_refs.base_key(str(c)) == keys.FID]  # rFID of every reference
    fid_n = (done.loc[done[fid_cols].notna().any(axis=1), "fid_n_images"].dropna() if fid_cols
             else pd.Series(dtype=float))
    row["fid_n_images"] = float(fid_n.min()) if len(fid_n) else math.nan
    n_img = done["n_images"].dropna() if "n_images" in done else pd.Series(dtype=float)
    row["n_images"] = float(n_img.min()) if len(n_img) else math.nan
    return row


def _released_rows(dataset: str, released: pd.DataFrame, cols: list[str],
                   metric_cols: list[str]) -> list[dict[str, Any]]:
    """The released checkpoints of one dataset: one row per checkpoint kind and row key, after the
    trained rows, with Source "released" and the kind in Ref; never part of the grid."""
    rows: list[dict[str, Any]] = []
    if released.empty:
        return rows
    kind = released["Checkpoint"].fillna("released")
    for key, g in released.assign(_kind=kind).groupby(["_kind", *cols], sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row = {"Dataset": dataset, **dict(zip(cols, key[1:])), "Source": RELEASED, "Ref": str(key[0])}
        rows.append({**row, **_group_row(g.drop(columns="_kind"), 1, metric_cols)})
    return rows


def check_group_by(group_by: Sequence[str]) -> None:
    unknown = [g for g in group_by if g not in GROUP_FIELDS]
    if unknown:
        raise ValueError(f"cannot group by {unknown}; choose from {', '.join(GROUP_FIELDS)}")


def dataset_frame(runs: pd.DataFrame, metrics: Sequence[str] | None = None,
                  group_by: Sequence[str] = DEFAULT_GROUP_BY, methods: Sequence[str] | None = None,
                  reported: pd.DataFrame | None = None) -> pd.DataFrame:
    """Paper layout: one row per dataset and group (default: method and codebook size).

    Metric columns hold the mean over finished seeds, `<metric>_std` the sample std (NaN for one
    seed). `Finished`/`Failed`/`Expected` count runs; a group with no finished run keeps its row
    (Status "failed"), and a method x codebook-size cell of the grid with no record at all gets a
    "missing" row. Preset and steps join the row key whenever they vary within a dataset, so runs of
    different protocols are never averaged together. `reported` rows (bench.reporting.reported) are
    appended with Source "reported". `attrs["metrics"]` lists the metric keys."""
    metric_cols = metric_columns(runs, metrics)
    for key in metric_cols:
        if len(runs) and key not in runs.columns:
            raise ValueError(f"unknown metric {key!r}; records carry: "
                             f"{', '.join(c for c in runs.columns if c not in ID_COLUMNS)}")
    check_group_by(group_by)
    out_rows: list[dict[str, Any]] = []
    for dataset, all_ddf in (runs.groupby("Dataset", sort=True, dropna=False) if len(runs) else []):
        source = all_ddf["Source"] if "Source" in all_ddf else pd.Series(MEASURED, index=all_ddf.index)
        ddf, released = all_ddf[source != RELEASED], all_ddf[source == RELEASED]
        fields = list(group_by) + [f for f in PROTOCOL_FIELDS
                                   if f not in group_by and len(ddf) and ddf[GROUP_FIELDS[f]].nunique() > 1]
        cols = [GROUP_FIELDS[f] for f in fields]
        seeds = sorted(ddf["Seed"].dropna().unique().tolist())
        expected_n = 1 if "seed" in fields else max(len(seeds), 1)
        groups = ({k if isinstance(k, tuple) else (k,): g for k, g in ddf.groupby(cols, sort=True, dropna=False)}
                  if len(ddf) else {})
        if len(ddf) and "method" in fields and "codebook_size" in fields:
            _grid_keys(ddf, cols, groups, methods)
        for key, g in sorted(groups.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
            row = {"Dataset": dataset, **dict(zip(cols, key)), "Source": MEASURED, "Ref": ""}
            out_rows.append({**row, **_group_row(g, expected_n, metric_cols)})
        out_rows += _released_rows(dataset, released, cols, metric_cols)
    out = pd.DataFrame(out_rows)
    if reported is not None and len(reported):
        rep = reported.copy()
        for k in metric_cols:
            rep[k] = rep.get(k, math.nan)
            rep[f"{k}_std"] = math.nan
        out = pd.concat([out, rep], ignore_index=True) if len(out) else rep
    if out.empty:
        return out
    return _ordered(out, metric_cols, group_by)


def _ordered(out: pd.DataFrame, metric_cols: list[str], group_by: Sequence[str]) -> pd.DataFrame:
    """Identity columns first, then mean and std of each metric, then counts; integers as integers."""
    for f in GROUP_FIELDS.values():
        if f in out.columns and out[f].isna().all() and f not in [GROUP_FIELDS[g] for g in group_by]:
            out = out.drop(columns=f)
    for c in BIT_COLUMNS:
        if c in out.columns and pd.to_numeric(out[c], errors="coerce").isna().all():
            out = out.drop(columns=c)  # no record has one: the layout of older records' tables stays
        elif c in out.columns:
            out[c] = pd.to_numeric(out[c], errors="coerce")
    lead = (["Dataset"] + [c for c in GROUP_FIELDS.values() if c in out.columns]
            + [*LAYOUT_COLUMNS, *BIT_COLUMNS, "Source", "Ref"])
    counts = ["Finished", "Failed", "Expected", "Status"]
    tail = [c for c in ["fid_n_images", "n_images", "run_ids"] if c in out.columns]
    metric_part = [c for k in metric_cols for c in (k, f"{k}_std")]
    out = out[[c for c in lead + metric_part + counts + tail if c in out.columns]]
    for c in ("Codebook size", "Steps", "Seed", *LAYOUT_COLUMNS, "Finished", "Failed", "Expected", "fid_n_images",
              "n_images"):
        if c in out.columns:  # integers stay integers in CSV even where a missing row has none
            out[c] = pd.to_numeric(out[c], errors="coerce").round().astype("Int64")
    out.attrs["metrics"] = list(metric_cols)
    return out.reset_index(drop=True)


def metrics_of(df: pd.DataFrame) -> list[str]:
    """Metric keys of a summary frame, in column order (those with a `<key>_std` column)."""
    return [c for c in df.columns if f"{c}_std" in df.columns]
