"""The notes under the tables, as plain text lines: what ± and the marks mean and what was tested,
rFID daggers, released checkpoints, sources of published rows, failed runs and missing grid cells.
Renderers only format the lines."""
from __future__ import annotations

import pandas as pd

from bench.evaluation.metrics import fid_infinity, keys, metric_weights
from bench.evaluation.metrics.registry import spec
from bench.reporting import fid_reference_columns as fid_refs
from bench.reporting import fid_infinity_interval, intervals, paired, seeds_needed, sequential
from bench.reporting.frames import INDICES, RELEASED, REPORTED, metrics_of
from bench.reporting.reported import TOKENS_AS_REPORTED
from bench.reporting.table_model import FID_DAGGER_BELOW, fid_inf_dagger


def fid_inf_note() -> str:
    """Which FID is comparable across image counts (the dagger's note, here and under the generation tables)."""
    smallest = fid_infinity.images_for_smallest(FID_DAGGER_BELOW)
    return (f"FID∞ (Chong & Forsyth 2020: FID at {fid_infinity.POINTS} subsample sizes from "
            f"{fid_infinity.MIN_FRACTION:.0%} of the images to all, a line in 1/N, its intercept) is the number "
            f"comparable across image counts, once its smallest subsample has {FID_DAGGER_BELOW} images (n ≥ "
            f"{smallest:,.0f}); below that FID_N bends away from the 1/N line, FID∞ removes only part of the bias "
            f"and carries the dagger too.")


def reference_numbers(df: pd.DataFrame) -> dict[str, int]:
    """[Rn] numbers of the published sources in a frame, in order of first appearance."""
    rep = df[df["Source"] == REPORTED] if "Source" in df.columns else df.iloc[0:0]
    return {ref: i + 1 for i, ref in enumerate(dict.fromkeys(rep["Ref"]))}


def reference_text(ref: str, reported: pd.DataFrame | None) -> str:
    if reported is not None and len(reported) and "Ref" in reported:
        rows = reported[reported["Ref"] == ref]
        if len(rows):
            r = rows.iloc[0]
            return f"{r['paper']}, {r['table']}: {r['url']} ({r['protocol']})"
    return ref


def interval_notes(df: pd.DataFrame) -> list[str]:
    """What ± means on each row (the "95% interval" column names the kind)."""
    if "Interval" not in df.columns or not (df["Interval"].astype(str) != "").any():
        return []
    notes = [f"± is half the width of a 95% interval; the 95% interval column says which kind. "
             f"\"t, n seeds\": a t-interval over n >= {intervals.MIN_SEEDS} seeds (includes run-to-run training "
             f"variance). \"images, n seed(s)\": a bootstrap over the validation images of the run(s) "
             f"({intervals.IMAGE_RESAMPLES} resamples; rFID and KID {intervals.FEATURE_RESAMPLES}, from the stored "
             f"Inception features against the cached reference features): how precisely these trained models "
             f"were measured, NOT how much another training run would differ. A value without ± has no "
             f"interval (a whole-split statistic such as usage with fewer than {intervals.MIN_SEEDS} seeds, or "
             f"nothing stored to resample)."]
    if keys.FID in df.columns and f"{keys.FID}_lo" in df.columns:
        few = df[(df["Interval"].astype(str).str.startswith("images")) & df[keys.FID].notna()
                 & df[f"{keys.FID}_lo"].isna()]
        if len(few):
            notes.append("rFID without ±: its run folder has no Inception features, the FID reference entry is "
                         "not in this machine's cache, or more than 4096 images (the resampling needs n x n "
                         "matrices).")
    if keys.FID_INF in df.columns and f"{keys.FID_INF}_lo" in df.columns:
        few = df[(df["Interval"].astype(str).str.startswith("images")) & df[keys.FID_INF].notna()
                 & df[f"{keys.FID_INF}_lo"].isna()]
        if len(few):
            notes.append(f"rFID∞ without ±: as rFID, or more than {fid_infinity_interval.MAX_IMAGES} images (each "
                         f"resample refits {fid_infinity.POINTS} subsample FIDs).")
        if (df["Interval"].astype(str).str.startswith("images") & df[f"{keys.FID_INF}_lo"].notna()).any():
            notes.append(f"rFID∞'s ± comes from the first {fid_infinity_interval.RESAMPLES} of the same resamples, "
                         f"each one refitted.")
    return notes


def mark_notes(df: pd.DataFrame, comparisons: pd.DataFrame | None) -> list[str]:
    """What bold and underline mean, which tests decided them, and the columns nothing could test."""
    if comparisons is None or comparisons.empty:
        return []
    kinds = set(comparisons["kind"])
    notes = [] if kinds == {paired.UNTESTED} else [f"Bold (* in plain text): the best of its column and every row whose difference from it is not resolved (a bold "
             f"mark shared by several rows is a tie); underlined: the best of the rest. Each measured row "
             f"was tested against its column's best: with >= {intervals.MIN_SEEDS} seeds in both rows, a "
             f"paired t-test over the shared seeds (resolved: p < 0.05); otherwise a paired bootstrap of the "
             f"differences on the same images (the same resamples for both rows; resolved: its 95% "
             f"interval excludes 0)."]
    if intervals.IMAGES in kinds:
        notes.append(f"With fewer than {intervals.MIN_SEEDS} seeds a resolved difference holds for these "
                     f"trained models on these images only: it leaves out run-to-run training variance, and "
                     f"another seed or machine can reverse it. Whether the METHODS differ needs >= "
                     f"{intervals.MIN_SEEDS} seeds (see the conclusion).")
    untested = []
    for (dataset, metric), g in comparisons.groupby(["Dataset", "metric"], sort=False):
        if (g["kind"] == paired.UNTESTED).all():
            untested.append(f"{spec(metric).label} on {dataset}")
    if untested:
        notes.append(f"No marks (nothing to test: fewer than {intervals.MIN_SEEDS} seeds and no per-image "
                     f"values or features): {', '.join(untested)}.")
    return notes


def seeds_needed_notes(comparisons: pd.DataFrame | None) -> list[str]:
    """Per comparison not resolved across seeds: about how many seeds would resolve it (seeds_needed.py)."""
    if comparisons is None or comparisons.empty or "seeds_needed_note" not in comparisons:
        return []
    open_ = comparisons[comparisons["seeds_needed_note"].fillna("").astype(bool)]
    if open_.empty:
        return []
    parts = []
    for (dataset, metric), g in open_.groupby(["Dataset", "metric"], sort=False):
        rows = "; ".join(f"{r['Method']} against {r['best_method']}: {r['seeds_needed_note']}"
                         + (f" (over {int(r['seeds_shared'])} shared seeds)" if r.get("seeds_shared", 0) >= 2 else "")
                         for _, r in g.iterrows())
        parts.append(f"{spec(str(metric)).label} on {dataset}: {rows}")
    return [f"Seeds needed: for each row not resolved across seeds from its column's best, about how many seeds "
            f"would let a paired t-test at p < 0.05 resolve a difference of the size observed with "
            f"{seeds_needed.POWER:.0%} power (from the spread of the paired differences over the seeds both rows "
            f"share; an estimate, since that spread is itself estimated from few seeds; the CSV's "
            f"<metric>_seeds_needed). " + ". ".join(parts) + "."]


def sequential_notes(comparisons: pd.DataFrame | None, state: sequential.State | None) -> list[str]:
    """Which comparisons `--until-resolved`'s sequential test decided, its design and the looks made."""
    if state is None or comparisons is None or comparisons.empty or "look" not in comparisons:
        return []
    seq = comparisons[comparisons["look"].fillna(0).astype(int) > 0]
    if seq.empty:
        return []
    looks = sorted({(int(r["look"]), int(r["n"])) for _, r in seq.iterrows()})
    made = ", ".join(f"look {lk} ({n} seeds)" for lk, n in looks)
    added = sorted({int(s) for b in state.batches for s in b.get("seeds", [])})
    return [f"Decided by --until-resolved ({sequential.STATE_FILE}): {state.design.describe()}. Looks that "
            f"decided the comparisons here: {made} of {len(state.design.looks)} at most"
            + (f"; seeds added by the loop: {', '.join(map(str, added))}" if added else "") + ". A pair is resolved "
            "at the first look whose paired t-test over its first n seeds has p below that look's nominal level, "
            "which keeps the chance of a false difference at 0.05 over all looks."]


def token_notes(reported: pd.DataFrame | None, refs: dict[str, int]) -> list[str]:
    """Published rows whose source counts its "tokens" otherwise than Indices per image (LG-VQ's
    512 for VQCT): the source's number, so it is not lost, and why it is in neither column."""
    col = TOKENS_AS_REPORTED
    if reported is None or reported.empty or col not in reported.columns:
        return []
    notes = []
    differs = reported[reported[col].notna() & (reported[INDICES].isna() | (reported[col] != reported[INDICES]))]
    for (ref, method, tokens), g in differs.groupby(["Ref", "Method", col], sort=False):
        if ref in refs:
            notes.append(f"{method} [R{refs[ref]}]: {int(tokens)} tokens per image as its source counts them; shown "
                         f"in neither Positions nor Indices per image, which count differently (docs/results.md).")
    return notes


def released_notes(df: pd.DataFrame) -> list[str]:
    if "Source" not in df.columns or not (df["Source"] == RELEASED).any():
        return []
    return ["Rows marked (released) are released checkpoints evaluated by vqbench on the same images "
            "(run_bench.py eval --checkpoint): measured like the trained rows but trained elsewhere, under "
            "other recipes; they take no part in best/second marks."]


def dagger_notes(df: pd.DataFrame) -> list[str]:
    """The dagger's note: rFIDs from fewer than FID_DAGGER_BELOW images, and which number compares
    across image counts when the table has rFID∞."""
    if "fid_n_images" not in df.columns:
        return []
    n_col = df["fid_n_images"]

    def any_reference(key: str) -> pd.Series | None:
        """Rows with a value of `key` against any FID reference (fid_reference_columns)."""
        cols = [c for c in metrics_of(df) if fid_refs.base_key(c) == key]  # not their _std, _lo, _rank
        return df[cols].notna().any(axis=1) if cols else None

    has_fid, has_inf = any_reference(keys.FID), any_reference(keys.FID_INF)
    small = df[(n_col < FID_DAGGER_BELOW) & has_fid] if has_fid is not None else df.iloc[0:0]
    inf = df[has_inf & n_col.map(fid_inf_dagger)] if has_inf is not None else df.iloc[0:0]
    if not len(small) and not len(inf):
        return []
    line = "†"
    if len(small):
        ns = ", ".join(str(int(n)) for n in sorted(set(small["fid_n_images"])))
        line += (f" rFID from fewer than {FID_DAGGER_BELOW} images (n = {ns}): biased upwards, not comparable with "
                 f"published rFIDs.")
    return [line + (f" {fid_inf_note()}" if has_inf is not None else "")]


def unavailable_notes(df: pd.DataFrame) -> list[str]:
    """FD-DINOv2 / CMMD columns asked for but empty: their weights were not given to any run."""
    notes = []
    for key, name in ((keys.FD_DINOV2, "dinov2"), (keys.CMMD, "clip")):
        if key in df.columns and not df[key].notna().any():
            w = metric_weights.WEIGHTS[name]
            notes.append(f"{spec(key).label} unavailable: no run had {w.network} weights; get {w.source} and "
                         f"rerun with {metric_weights.FLAG} {name}=PATH.")
    return notes


def dataset_notes(df: pd.DataFrame, reported: pd.DataFrame | None = None,
                  failures: pd.DataFrame | None = None, comparisons: pd.DataFrame | None = None,
                  state: sequential.State | None = None) -> list[str]:
    """The notes under the per-dataset tables; `state`: the --until-resolved loop's, if it ran."""
    notes = (interval_notes(df) + mark_notes(df, comparisons) + sequential_notes(comparisons, state)
             + seeds_needed_notes(comparisons) + released_notes(df) + unavailable_notes(df))
    notes += dagger_notes(df)
    if "Source" in df.columns and (df["Source"] == REPORTED).any():
        notes.append("Rows in italics marked [Rn] are published numbers, not measured by vqbench; their protocols "
                     "differ and they take no part in best/second marks.")
        for ref, n in reference_numbers(df).items():
            notes.append(f"[R{n}] {reference_text(ref, reported)}")
        notes += token_notes(reported, reference_numbers(df))
    if failures is not None and len(failures):
        for _, f in failures.iterrows():
            err = str(f.get("Error") or "no error recorded").splitlines()[0][:160]
            notes.append(f"failed: {f['run_id']} ({f['Method']} on {f['Dataset']}, K={f['Codebook size']}, "
                         f"seed {f['Seed']}): {err}")
    if "Status" in df.columns and (df["Status"] == "missing").any():
        notes.append("missing: no record for this cell of the method x codebook-size grid.")
    return notes


def cross_notes(cross: pd.DataFrame, reported: pd.DataFrame | None = None) -> list[str]:
    """The notes under the cross-dataset table."""
    notes = []
    if "Mean rank" in cross.columns:
        notes.append("Mean rank: each measured row's rank by value in each dataset where it has one (1 is best, "
                     "equal values share a rank), averaged. Resolved wins: the datasets where the row alone holds "
                     "the bold mark, its difference from every other row resolved (see the per-dataset notes for "
                     f"the test; with fewer than {intervals.MIN_SEEDS} seeds a win holds over images only, for "
                     "these trained models). Released and published rows are not ranked.")
    n_cols = [c for c in cross.columns if c.endswith("_fid_n_images")]
    if n_cols and any((cross[c] < FID_DAGGER_BELOW).any() for c in n_cols):
        notes.append(f"† rFID from fewer than {FID_DAGGER_BELOW} images: not comparable with published rFIDs.")
    notes += [f"[R{n}] {reference_text(ref, reported)}" for ref, n in reference_numbers(cross).items()]
    return notes
