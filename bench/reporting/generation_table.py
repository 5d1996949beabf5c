"""The "Generation" section beside the reconstruction tables: per dataset, one row per method, codebook
size and prior preset (tokenizer preset too when it varies), from the prior records under
OUT/priors/ (bench.generation.record) and their tokenizers' records under OUT/runs/.

Columns: the tokenizer's rFID and rFID-infinity (read from its own record, so they are the numbers of
the reconstruction table), then the prior's gFID with the number of generated images it used, its
gFID-infinity (bench.evaluation.metrics.fid_infinity; interval: bench.reporting.fid_infinity_interval), KID, Inception Score,
precision, recall and the held-out NLL. Seeds (tokenizer and prior) are averaged, and ± is half a
95% interval as in the reconstruction tables (bench.reporting.intervals): with >= MIN_SEEDS finished
priors a t-interval over them, for every metric; with fewer, a bootstrap: rFID over the tokenizer's
validation images (its stored features, as the reconstruction table), gFID and KID over the
generated samples with the reference fixed (bench.generation.bootstrap), the replicates of several
seeds averaged; precision, recall, IS and NLL then stay point values. Best bold and second
underlined among finished rows (the best value, not a test); a FID from fewer than 2048 images
carries a dagger (the rFID convention of bench.reporting.footnotes). A metric a prior could not compute reads "n/a"
and the note under the table says why (the record's protocol holds the reason); a prior that was
skipped (its tokenizer did not finish) or failed keeps its row, counted in Runs and listed below.

This module only reads the reporting package (table_model, renderers): the renderers draw these
tables as they draw the reconstruction ones.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

import numpy as np

from bench.core import run_folder
from bench.core.atomic import write_text_atomic
from bench.evaluation.metrics.registry import HIGHER, LOWER
from bench.generation import bootstrap, folder
from bench.generation.record import FINISHED, SKIPPED, iter_prior_records
from bench.reporting import (feature_bootstrap, fid_infinity_interval, fid_reference_columns, footnotes, intervals,
                             renderers, run_options)
from bench.reporting.frames import BITS
from bench.reporting.per_image import load_run, reference_entry
from bench.reporting.table_model import (FID_DAGGER_BELOW, NA, Cell, Column, Document, Table, bits_text,
                                         fid_inf_dagger, mean_text,
                                         ranks)
from bench.runs import records

STEM = "generation"  # OUT/tables/generation.{md,csv,tex}
SEQUENCE_LABEL = "Prior tokens"  # sequence length the prior models: positions x indices per position
UNAVAILABLE = "n/a"  # a metric the prior could not compute (the notes say why), unlike NA: no value at all
ID_COLUMNS = ("Method", "Options", "Codebook size", "Preset", "Prior")


@dataclass(frozen=True)
class MetricColumn:
    key: str  # column of the frame (the prior record's metric key, or rfid)
    label: str
    better: str | None
    decimals: int
    n_images: str | None = None  # the frame column with the image count behind a FID (for the dagger)
    extrapolated: bool = False  # FID-infinity: daggered by its smallest subsample (table_model.fid_inf_dagger)


COLUMNS = (
    MetricColumn("rfid", "rFID", LOWER, 2, "rfid_n_images"),
    MetricColumn("rfid_inf", "rFID∞", LOWER, 2, "rfid_n_images", extrapolated=True),
    MetricColumn("gfid", "gFID", LOWER, 2, "gfid_n_images"),
    MetricColumn("gfid_inf", "gFID∞", LOWER, 2, "gfid_n_images", extrapolated=True),
    MetricColumn("gkid", "KID", LOWER, 4),
    MetricColumn("inception_score", "IS", HIGHER, 2),
    MetricColumn("precision", "Precision", HIGHER, 3),
    MetricColumn("recall", "Recall", HIGHER, 3),
    MetricColumn("val_nll", "NLL", None, 3),  # nats per token: not comparable across layouts, so no marks
)
TOKENIZER_KEYS = ("rfid", "rfid_inf")  # from the tokenizer's record: averaged over distinct tokenizer runs
# Each column's FID reference is named in its header, and rows of different references never share a
# table (bench.reporting.fid_reference_columns): rFID's is the tokenizer record's, gFID's the prior's.
REFERENCE_OF = {"rfid": "rfid_reference", "rfid_inf": "rfid_reference", "gfid": "gfid_reference",
                "gfid_inf": "gfid_reference", "gkid": "gfid_reference"}
REFERENCE_KEYS = ("rfid_reference", "gfid_reference")


def gfid_reference(fid_proto: dict[str, Any]) -> str:
    """The short label of a prior's gFID reference: the training split's sample, `train:N`."""
    ref = fid_proto.get("reference") if isinstance(fid_proto.get("reference"), dict) else {}
    n = ref.get("n_images")
    return f"train:{int(n)}" if isinstance(n, (int, float)) and not pd.isna(n) else "train"
PRIOR_COLUMNS = tuple(c for c in COLUMNS if c.key not in TOKENIZER_KEYS)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _rfid_replicates(out: Path | str, run_id: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """rFID and rFID-infinity of each resample of a tokenizer run's validation images, as the
    reconstruction table's intervals (its stored features against the cached reference features)."""
    files = load_run(out, run_id)
    if files.features is None or files.reference is None:
        return None, None
    reps = feature_bootstrap.replicates(files.features, files.reference)
    return (None if reps is None else reps["fid"],
            fid_infinity_interval.paired_replicates(files.features, files.reference))


def _gfid_inf_replicates(prior_dir: Path, record: dict[str, Any]) -> np.ndarray | None:
    """gFID-infinity of each resample of a prior's generated samples (reference fixed), or None."""
    fid_proto = (record.get("protocol") or {}).get("fid") or {}
    feats, _ = bootstrap.sample_features(prior_dir, fid_proto.get("generated"))
    ref = fid_proto.get("reference") if isinstance(fid_proto.get("reference"), dict) else {}
    entry, _ = reference_entry(ref.get("file"), ref.get("n_images"))
    if feats is None or entry is None:
        return None
    return fid_infinity_interval.generated_replicates(feats, *entry)


def prior_rows(recs: Iterable[dict[str, Any]], out: Path | str) -> pd.DataFrame:
    """One row per prior record, with its tokenizer's rFID (and image count) from the tokenizer's
    record under OUT/runs/ where it is there, else the copy the prior record carries, and the
    bootstrap replicates of rFID (the tokenizer's images) and of gFID and KID (the prior's samples)."""
    rows, rfid_reps, tokenizer_configs = [], {}, []
    for r in recs:
        t, m, proto = r.get("tokenizer") or {}, r.get("metrics") or {}, r.get("protocol") or {}
        tok = records.read_record(run_folder.run_dir(out, t["run_id"])) if t.get("run_id") else None
        tok_m, tok_proto = (tok or {}).get("metrics") or {}, ((tok or {}).get("protocol") or {}).get("fid")
        tokenizer_configs.append({"config": (tok or {}).get("config") or {"dataset": t.get("dataset"),
                                                                         "method": t.get("method")}})
        fid_proto = proto.get("fid") if isinstance(proto.get("fid"), dict) else {}
        is_proto = proto.get("inception_score") if isinstance(proto.get("inception_score"), dict) else {}
        row = {"Dataset": t.get("dataset"), "Method": t.get("method"), "Codebook size": t.get("codebook_size"),
               "Preset": t.get("preset"), "Prior": (r.get("config") or {}).get("preset"), "Seed": t.get("seed"),
               "Prior seed": (r.get("config") or {}).get("seed"), "Status": r.get("status"), "Error": r.get("error"),
               "prior_id": r.get("prior_id"), "run_id": t.get("run_id"),
               "Sequence": (r.get("layout") or {}).get("sequence_length"),
               "Bits": _number((tok or {}).get("bits_per_image")),  # the tokenizer's budget (frames.BITS)
               "rfid": _number(tok_m.get("fid") if tok else t.get("rfid")),
               "rfid_inf": _number(tok_m.get("fid_inf")),
               "rfid_n_images": _number(tok_proto.get("n_images") if isinstance(tok_proto, dict) else None),
               "rfid_skipped": tok_proto.get("skipped") if isinstance(tok_proto, dict) else None,
               "gfid_n_images": _number(fid_proto.get("generated")),
               "rfid_reference": fid_reference_columns.record_reference(tok or {}),
               "gfid_reference": gfid_reference(fid_proto),
               "gfid_skipped": fid_proto.get("skipped"),
               "is_unavailable": None if is_proto.get("available", True) else is_proto.get("why")}
        for c in PRIOR_COLUMNS:
            row[c.key] = _number(m.get(c.key))
        row["gkid_std_of_subsets"] = _number(m.get("gkid_std"))
        reps, why = (None, None)
        if r.get("status") == FINISHED and not pd.isna(row["gfid"]) and r.get("prior_id"):
            reps, why = bootstrap.load(folder.prior_dir(out, r["prior_id"]), r)
        row["gen_replicates"], row["gen_no_interval"] = reps, why
        row["gfid_inf_replicates"] = (_gfid_inf_replicates(folder.prior_dir(out, r["prior_id"]), r)
                                      if reps is not None and not pd.isna(row["gfid_inf"]) else None)
        rid, row["rfid_replicates"], row["rfid_by_prior"] = t.get("run_id"), None, False
        row["rfid_inf_replicates"] = None
        measured = proto.get("tokenizer_rfid") if isinstance(proto.get("tokenizer_rfid"), dict) else {}
        if pd.isna(row["rfid"]) and not pd.isna(_number(m.get("tokenizer_rfid"))):
            # the tokenizer's record has none: the rFID the prior measured (bench.generation.tokenizer_rfid)
            row.update(rfid=_number(m["tokenizer_rfid"]), rfid_n_images=_number(measured.get("n_images")),
                       rfid_skipped=None, rfid_by_prior=True, rfid_reference=fid_reference_columns.VAL)
            feats = bootstrap.tokenizer_rfid_features(folder.prior_dir(out, r["prior_id"]))
            got = None if feats is None else feature_bootstrap.replicates(*feats)
            row["rfid_replicates"] = None if got is None else got["fid"]
        elif rid and tok and tok.get("status") == records.FINISHED and not pd.isna(row["rfid"]):
            if rid not in rfid_reps:
                rfid_reps[rid] = _rfid_replicates(out, rid)
            row["rfid_replicates"], row["rfid_inf_replicates"] = rfid_reps[rid]
        rows.append(row)
    # tokenizers of one method trained with different options are different rows (frames.PROTOCOL_FIELDS)
    for row, options in zip(rows, run_options.options_labels(tokenizer_configs)):
        row["Options"] = options
    df = pd.DataFrame(rows)
    if len(df):
        df = df.sort_values(["Dataset", "Method", "Options", "Codebook size", "Prior", "Seed"],
                            key=lambda s: s.astype(str),
                            kind="stable").reset_index(drop=True)
    return df


def _pooled(reps: list[Any]) -> np.ndarray | None:
    """The mean replicate over seeds (the same resamples for each), or None unless all have them."""
    arrays = [np.asarray(x) for x in reps if x is not None]
    if not arrays or len(arrays) != len(reps) or len({len(a) for a in arrays}) != 1:
        return None
    return np.mean(arrays, axis=0)


def _intervals(done: pd.DataFrame, row: dict[str, Any]) -> dict[str, intervals.Interval | None]:
    """The 95% interval of every metric column of one row (module docstring), by key."""
    out: dict[str, intervals.Interval | None] = {c.key: None for c in COLUMNS}
    tokenizers = done.drop_duplicates("run_id")
    for key in TOKENIZER_KEYS:
        if len(tokenizers) >= intervals.MIN_SEEDS:
            out[key] = intervals.t_interval(tokenizers[key].dropna().tolist())
            continue
        reps = _pooled(tokenizers[f"{key}_replicates"].tolist())
        n = tokenizers["rfid_n_images"].max()
        if reps is not None and not pd.isna(row[key]):
            out[key] = intervals.bootstrap_interval(float(row[key]), reps, int(n) if not pd.isna(n) else 0)
    if len(done) >= intervals.MIN_SEEDS:
        for c in PRIOR_COLUMNS:
            out[c.key] = intervals.t_interval(done[c.key].dropna().tolist())
        return out
    gen = done["gen_replicates"].tolist()
    if gen and all(g is not None for g in gen) and len({g.n_samples for g in gen}) == 1:
        for key in ("gfid", "gkid"):
            reps = _pooled([getattr(g, key) for g in gen])
            if reps is not None and not pd.isna(row[key]):
                iv = intervals.bootstrap_interval(float(row[key]), reps, gen[0].n_samples)
                out[key] = None if iv is None else intervals.Interval(iv.low, iv.high, bootstrap.KIND, iv.n)
        reps = _pooled(done["gfid_inf_replicates"].tolist())
        if reps is not None and not pd.isna(row["gfid_inf"]):
            iv = intervals.bootstrap_interval(float(row["gfid_inf"]), reps, gen[0].n_samples)
            out["gfid_inf"] = None if iv is None else intervals.Interval(iv.low, iv.high, bootstrap.KIND, iv.n)
    return out


def _interval_text(ivs: dict[str, intervals.Interval | None], n_tokenizers: int, n_priors: int) -> str:
    """The kind of the row's intervals: "t, n seeds", "images / samples, n seed(s)" (rFID over the
    tokenizer's images, gFID and KID over the samples), or each column's kind when they differ."""
    def kind(iv: intervals.Interval | None, boot: str, seeds: int) -> str | None:
        if iv is None:
            return None
        return f"t, {iv.n} seeds" if iv.kind == intervals.SEEDS else f"{boot}, {seeds} seed" + "s" * (seeds > 1)

    r = kind(ivs["rfid"], "images", n_tokenizers)
    g = kind(ivs["gfid"] or ivs["gkid"], bootstrap.KIND, n_priors)
    if r and g and r.split(", ")[1] == g.split(", ")[1] and not r.startswith("t"):
        return f"images / samples, {g.split(', ')[1]}"
    if r and g and r != g:
        return f"rFID: {r}; gFID, KID: {g}"
    return r or g or ""


def generation_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset, method, codebook size, tokenizer preset and prior preset: the mean over
    finished priors of every metric (rFID: over their distinct tokenizer runs), the sample std, the
    95% interval (`<k>_lo`, `<k>_hi`, its kind in `Interval`), counts and the largest image counts."""
    if rows.empty:
        return rows
    keys = ["Dataset", *ID_COLUMNS, *REFERENCE_KEYS]
    out = []
    for key, g in rows.groupby(keys, sort=False, dropna=False):
        done = g[g["Status"] == FINISHED]
        row: dict[str, Any] = dict(zip(keys, key))
        for c in COLUMNS:
            vals = (done.drop_duplicates("run_id") if c.key in TOKENIZER_KEYS else done)[c.key].dropna()
            row[c.key] = vals.mean() if len(vals) else math.nan
            row[f"{c.key}_std"] = vals.std(ddof=1) if len(vals) > 1 else math.nan
        for col in ("rfid_n_images", "gfid_n_images"):
            row[col] = done[col].max() if len(done) else math.nan
        ivs = _intervals(done, row)
        for c in COLUMNS:
            row[f"{c.key}_lo"] = ivs[c.key].low if ivs[c.key] else math.nan
            row[f"{c.key}_hi"] = ivs[c.key].high if ivs[c.key] else math.nan
        row["Interval"] = _interval_text(ivs, done["run_id"].nunique(), len(done)) if len(done) else ""
        row["Sequence"] = next((int(v) for v in g["Sequence"] if not pd.isna(v)), None)
        row["Bits"] = next((float(v) for v in g.get("Bits", ()) if not pd.isna(v)), math.nan)
        row["Finished"], row["Expected"] = len(done), len(g)
        row["Skipped"], row["Failed"] = int((g["Status"] == SKIPPED).sum()), int((~g["Status"].isin(
            [FINISHED, SKIPPED])).sum())
        for col in ("rfid_skipped", "gfid_skipped"):
            row[col] = next((s for s in done[col] if s), None)
        row["is_unavailable"] = next((s for s in done["is_unavailable"] if s), None)
        row["gfid_no_interval"] = next((s for s in done["gen_no_interval"] if s), None) if len(done) else None
        row["rfid_by_prior"] = bool(done["rfid_by_prior"].any()) if len(done) else False
        out.append(row)
    return pd.DataFrame(out)


def _runs_text(r: pd.Series) -> str:
    text = f"{int(r['Finished'])}/{int(r['Expected'])}"
    extra = [f"{int(r[k])} {k.lower()}" for k in ("Skipped", "Failed") if r[k]]
    return text + (f" ({', '.join(extra)})" if extra else "")


INCEPTION_KEYS = ("gfid", "gfid_inf", "gkid", "inception_score", "precision", "recall")  # all off without Inception


def _why_unavailable(r: pd.Series, key: str) -> str | None:
    """Why a finished prior has no value for this metric (the reason its record gives), or None."""
    if not r["Finished"] or key not in (*INCEPTION_KEYS, *TOKENIZER_KEYS):
        return None
    if key in TOKENIZER_KEYS:
        return r["rfid_skipped"]
    return r["gfid_skipped"] or (r["is_unavailable"] if key == "inception_score" else None)


def _metric_cell(r: pd.Series, c: MetricColumn, rank: int) -> Cell:
    value = r[c.key]
    if pd.isna(value):
        return Cell(UNAVAILABLE if _why_unavailable(r, c.key) else NA)
    n = r[c.n_images] if c.n_images else math.nan
    text = mean_text(value, r[f"{c.key}_lo"], r[f"{c.key}_hi"], c.decimals)
    if (c.key == "gfid" or (c.key == "rfid" and r["rfid_by_prior"])) and not pd.isna(n):
        text += f" (n={int(n)})"
    dagger = fid_inf_dagger(n) if c.extrapolated else not pd.isna(n) and n < FID_DAGGER_BELOW
    return Cell(text, rank, dagger=dagger)


def _label(c: MetricColumn, sub: pd.DataFrame) -> str:
    """A column's label naming its FID reference (one per table: `document` splits by reference)."""
    col = REFERENCE_OF.get(c.key)
    if col is None or col not in sub or sub[col].dropna().empty:
        return c.label
    return f"{c.label} (vs {sub[col].dropna().iloc[0]})"


def dataset_table(sub: pd.DataFrame, dataset: str) -> Table:
    sub = sub.reset_index(drop=True)
    ids = [c for c in ID_COLUMNS if c in ("Method", "Codebook size", "Prior") or sub[c].nunique(dropna=False) > 1]
    ids.append("Sequence")
    if "Bits" in sub and sub["Bits"].notna().any():  # tokenizers recorded before their budget was: no column
        ids.append("Bits")
    cells = [[Cell(NA if pd.isna(r[c]) else bits_text(r[c], BITS) if c == "Bits" else str(r[c])) for c in ids]
             for _, r in sub.iterrows()]
    eligible = [bool(f) for f in sub["Finished"]]
    # FID-infinity columns only where a record has one: priors from before it keep their layout
    shown = [c for c in COLUMNS if not c.extrapolated or sub[c.key].notna().any()]
    for c in shown:
        rk = ranks(sub[c.key].astype(float).tolist(), c.better, c.decimals, eligible)
        for i, r in sub.iterrows():
            cells[i].append(_metric_cell(r, c, rk[i]))
    for i, r in sub.iterrows():
        cells[i].append(Cell(_runs_text(r)))
        cells[i].append(Cell(str(r["Interval"] or NA)))
    columns = ([Column({"Sequence": SEQUENCE_LABEL, "Bits": BITS}.get(c, c),
                       numeric=c in ("Codebook size", "Sequence", "Bits")) for c in ids]
               + [Column(_label(c, sub), c.better, True) for c in shown] + [Column("Runs"), Column("95% interval")])
    return Table(f"Generation on {dataset}", columns, cells)


def notes(frame: pd.DataFrame, rows: pd.DataFrame) -> list[str]:
    """The lines under the generation tables: what the columns and ± are, daggers, n/a reasons,
    priors that did not finish."""
    lines = [("Prior tokens: the length of the sequence the prior models (positions x indices per position); "
              "rFID: the tokenizer's reconstruction FID (its record); gFID, KID, IS, precision, recall: the "
              "prior's samples against the training split (n = generated images); NLL: held-out nats per token "
              "(not comparable across different Prior tokens or codebook sizes). rFID∞, gFID∞: FID-infinity "
              "(Chong & Forsyth 2020) of the same features, FID extrapolated to infinitely many images (gFID∞: "
              "the generated side only, the training-split reference fixed).")]
    if (frame["Interval"].astype(str) != "").any():
        lines.append(
            f"± is half the width of a 95% interval; the 95% interval column says which kind. \"t, n seeds\": a "
            f"t-interval over n >= {intervals.MIN_SEEDS} finished priors (or tokenizer runs, for rFID), for every "
            f"metric. \"images / samples\": with fewer seeds, a bootstrap ({intervals.FEATURE_RESAMPLES} fixed "
            f"resamples, seeds' replicates averaged): rFID over the tokenizer's validation images (as in the "
            f"reconstruction table), gFID and KID over the generated samples against the fixed training-split "
            f"reference, from the stored Inception features; it says how precisely these trained models were "
            f"measured, NOT how much another training run would differ. KID's ± is this interval, not the "
            f"std over KID's subsets (that is gkid_std in the record). Precision, recall, IS and NLL have no "
            f"interval below {intervals.MIN_SEEDS} seeds: point values. Bold and underline mark the best and "
            f"second-best value, not a tested difference.")
    missing: dict[str, list[str]] = {}
    for _, r in frame[frame["gfid"].notna() & frame["gfid_lo"].isna()].iterrows():
        missing.setdefault(str(r["gfid_no_interval"] or "no interval"), []).append(str(r["Method"]))
    for why, methods in missing.items():
        lines.append(f"gFID and KID without ± ({', '.join(dict.fromkeys(methods))}): {why}.")
    small = [int(n) for c in COLUMNS if c.n_images and not c.extrapolated
             for n, v in zip(frame[c.n_images], frame[c.key]) if not pd.isna(n) and not pd.isna(v) and n < FID_DAGGER_BELOW]
    small_inf = [n for c in COLUMNS if c.extrapolated for n, v in zip(frame[c.n_images], frame[c.key])
                 if not pd.isna(v) and fid_inf_dagger(n)]
    has_inf = any(frame[c.key].notna().any() for c in COLUMNS if c.extrapolated)
    if small or small_inf:
        line = "†" + (f" FID from fewer than {FID_DAGGER_BELOW} images (n = {', '.join(map(str, sorted(set(small))))}): "
                      "biased upwards, not comparable with published numbers." if small else "")
        lines.append(line + (f" {footnotes.fid_inf_note()}" if has_inf else ""))
    by_prior = frame[frame["rfid_by_prior"]]
    if len(by_prior):
        methods = ", ".join(dict.fromkeys(str(m) for m in by_prior["Method"]))
        lines.append(f"rFID of {methods}: the tokenizer's record has none (its preset computes no Inception "
                     f"features), so the prior stage measured it on n = "
                     f"{', '.join(dict.fromkeys(str(int(n)) for n in by_prior['rfid_n_images'] if not pd.isna(n)))} "
                     f"held-out images (eval.tokenizer_rfid_images); the reconstruction table has no rFID for it.")
    for why in dict.fromkeys(w for w in frame["rfid_skipped"] if w):
        lines.append(f"n/a (rFID): the tokenizer's evaluation computed none: {why}.")
    for why in dict.fromkeys(w for w in frame["gfid_skipped"] if w):
        lines.append(f"n/a (gFID, KID, IS, precision, recall): {why}.")
    for why in dict.fromkeys(w for w in frame["is_unavailable"] if w and w not in set(frame["gfid_skipped"])):
        lines.append(f"n/a (IS): {why}.")
    for _, r in rows[rows["Status"] != FINISHED].iterrows():
        err = str(r["Error"] or "no error recorded").splitlines()[0][:160]
        lines.append(f"{r['Status']}: prior {r['prior_id']} ({r['Method']}, K={r['Codebook size']}, seed {r['Seed']}): "
                     f"{err}")
    return lines


def select(rows: pd.DataFrame, methods: Sequence[str] | None = None, datasets: Sequence[str] | None = None,
           run_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """The rows of these methods, datasets and tokenizer runs (None: all)."""
    if rows.empty:
        return rows
    keep = pd.Series(True, index=rows.index)
    if methods:
        keep &= rows["Method"].isin(list(methods))
    if datasets:
        keep &= rows["Dataset"].isin(list(datasets))
    if run_ids is not None:
        keep &= rows["run_id"].isin(set(run_ids))
    return rows[keep].reset_index(drop=True)


def document(rows: pd.DataFrame) -> Document:
    frame = generation_frame(rows)
    tables = []
    for key, sub in (frame.groupby(["Dataset", *REFERENCE_KEYS], sort=False, dropna=False) if len(frame) else []):
        tables.append(dataset_table(sub, str(key[0])))  # one table per dataset and pair of FID references
    return Document(tables, notes(frame, rows) if tables else [], frame)


def render(rows: pd.DataFrame, fmt: str = "terminal") -> str:
    """The generation tables and notes in one format (CSV: the frame behind them)."""
    return renderers.get(fmt).document(document(rows))


def write(rows: pd.DataFrame, out: Path | str) -> list[Path]:
    """OUT/tables/generation.<ext> for every file format, each written atomically."""
    paths = []
    for fmt in renderers.file_formats():
        path = Path(out) / "tables" / f"{STEM}.{renderers.get(fmt).extension}"
        write_text_atomic(path, render(rows, fmt))
        paths.append(path)
    return paths


def read(out: Path | str, methods: Sequence[str] | None = None, datasets: Sequence[str] | None = None,
         run_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """The prior rows under OUT (see `prior_rows`), filtered as `select`."""
    return select(prior_rows(iter_prior_records(out), out), methods, datasets, run_ids)
