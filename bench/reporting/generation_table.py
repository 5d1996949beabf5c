"""The "Generation" section beside the reconstruction tables: per dataset, one row per method, codebook
size and prior preset (tokenizer preset too when it varies), from the prior records under
OUT/priors/ (bench.generation.record) and their tokenizers' records under OUT/runs/.

Columns: the tokenizer's rFID (read from its own record, so it is the number of the reconstruction
table), then the prior's gFID with the number of generated images it used, KID, Inception Score,
precision, recall and the held-out NLL. Seeds (tokenizer and prior) are averaged as in the
reconstruction tables: mean, and the sample std when there are two or more finished priors. Best
bold and second underlined among finished rows; a FID from fewer than 2048 images carries a dagger
(the rFID convention of bench.reporting.footnotes). A metric a prior could not compute reads "n/a"
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

from bench.core import run_folder
from bench.core.atomic import write_text_atomic
from bench.evaluation.metrics.registry import HIGHER, LOWER
from bench.generation.record import FINISHED, SKIPPED, iter_prior_records
from bench.reporting import renderers
from bench.reporting.table_model import FID_DAGGER_BELOW, NA, Cell, Column, Document, Table, ranks
from bench.runs import records

STEM = "generation"  # OUT/tables/generation.{md,csv,tex}
SEQUENCE_LABEL = "Prior tokens"  # sequence length the prior models: positions x indices per position
UNAVAILABLE = "n/a"  # a metric the prior could not compute (the notes say why), unlike NA: no value at all
ID_COLUMNS = ("Method", "Codebook size", "Preset", "Prior")


@dataclass(frozen=True)
class MetricColumn:
    key: str  # column of the frame (the prior record's metric key, or rfid)
    label: str
    better: str | None
    decimals: int
    n_images: str | None = None  # the frame column with the image count behind a FID (for the dagger)


COLUMNS = (
    MetricColumn("rfid", "rFID", LOWER, 2, "rfid_n_images"),
    MetricColumn("gfid", "gFID", LOWER, 2, "gfid_n_images"),
    MetricColumn("gkid", "KID", LOWER, 4),
    MetricColumn("inception_score", "IS", HIGHER, 2),
    MetricColumn("precision", "Precision", HIGHER, 3),
    MetricColumn("recall", "Recall", HIGHER, 3),
    MetricColumn("val_nll", "NLL", None, 3),  # nats per token: not comparable across layouts, so no marks
)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def prior_rows(recs: Iterable[dict[str, Any]], out: Path | str) -> pd.DataFrame:
    """One row per prior record, with its tokenizer's rFID (and image count) from the tokenizer's
    record under OUT/runs/ where it is there, else the copy the prior record carries."""
    rows = []
    for r in recs:
        t, m, proto = r.get("tokenizer") or {}, r.get("metrics") or {}, r.get("protocol") or {}
        tok = records.read_record(run_folder.run_dir(out, t["run_id"])) if t.get("run_id") else None
        tok_m, tok_proto = (tok or {}).get("metrics") or {}, ((tok or {}).get("protocol") or {}).get("fid")
        fid_proto = proto.get("fid") if isinstance(proto.get("fid"), dict) else {}
        is_proto = proto.get("inception_score") if isinstance(proto.get("inception_score"), dict) else {}
        row = {"Dataset": t.get("dataset"), "Method": t.get("method"), "Codebook size": t.get("codebook_size"),
               "Preset": t.get("preset"), "Prior": (r.get("config") or {}).get("preset"), "Seed": t.get("seed"),
               "Prior seed": (r.get("config") or {}).get("seed"), "Status": r.get("status"), "Error": r.get("error"),
               "prior_id": r.get("prior_id"), "run_id": t.get("run_id"),
               "Sequence": (r.get("layout") or {}).get("sequence_length"),
               "rfid": _number(tok_m.get("fid") if tok else t.get("rfid")),
               "rfid_n_images": _number(tok_proto.get("n_images") if isinstance(tok_proto, dict) else None),
               "rfid_skipped": tok_proto.get("skipped") if isinstance(tok_proto, dict) else None,
               "gfid_n_images": _number(fid_proto.get("generated")),
               "gfid_skipped": fid_proto.get("skipped"),
               "is_unavailable": None if is_proto.get("available", True) else is_proto.get("why")}
        for c in COLUMNS[1:]:
            row[c.key] = _number(m.get(c.key))
        row["gkid_std_of_subsets"] = _number(m.get("gkid_std"))
        rows.append(row)
    df = pd.DataFrame(rows)
    if len(df):
        df = df.sort_values(["Dataset", "Method", "Codebook size", "Prior", "Seed"], key=lambda s: s.astype(str),
                            kind="stable").reset_index(drop=True)
    return df


def generation_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset, method, codebook size, tokenizer preset and prior preset: the mean and
    sample std over finished priors of every metric, their counts, and the largest image counts."""
    if rows.empty:
        return rows
    keys = ["Dataset", *ID_COLUMNS]
    out = []
    for key, g in rows.groupby(keys, sort=False, dropna=False):
        done = g[g["Status"] == FINISHED]
        row: dict[str, Any] = dict(zip(keys, key))
        for c in COLUMNS:
            vals = done[c.key].dropna()
            row[c.key] = vals.mean() if len(vals) else math.nan
            row[f"{c.key}_std"] = vals.std(ddof=1) if len(vals) > 1 else math.nan
        for col in ("rfid_n_images", "gfid_n_images"):
            row[col] = done[col].max() if len(done) else math.nan
        row["Sequence"] = next((int(v) for v in g["Sequence"] if not pd.isna(v)), None)
        row["Finished"], row["Expected"] = len(done), len(g)
        row["Skipped"], row["Failed"] = int((g["Status"] == SKIPPED).sum()), int((~g["Status"].isin(
            [FINISHED, SKIPPED])).sum())
        for col in ("rfid_skipped", "gfid_skipped"):
            row[col] = next((s for s in done[col] if s), None)
        row["is_unavailable"] = next((s for s in done["is_unavailable"] if s), None)
        out.append(row)
    return pd.DataFrame(out)


def _runs_text(r: pd.Series) -> str:
    text = f"{int(r['Finished'])}/{int(r['Expected'])}"
    extra = [f"{int(r[k])} {k.lower()}" for k in ("Skipped", "Failed") if r[k]]
    return text + (f" ({', '.join(extra)})" if extra else "")


INCEPTION_KEYS = ("gfid", "gkid", "inception_score", "precision", "recall")  # all off without Inception


def _why_unavailable(r: pd.Series, key: str) -> str | None:
    """Why a finished prior has no value for this metric (the reason its record gives), or None."""
    if not r["Finished"] or key not in (*INCEPTION_KEYS, "rfid"):
        return None
    if key == "rfid":
        return r["rfid_skipped"]
    return r["gfid_skipped"] or (r["is_unavailable"] if key == "inception_score" else None)


def _metric_cell(r: pd.Series, c: MetricColumn, rank: int) -> Cell:
    value = r[c.key]
    if pd.isna(value):
        return Cell(UNAVAILABLE if _why_unavailable(r, c.key) else NA)
    n = r[c.n_images] if c.n_images else math.nan
    std = r[f"{c.key}_std"]
    text = f"{value:.{c.decimals}f}" + ("" if pd.isna(std) else f" ± {std:.{c.decimals}f}")
    if c.key == "gfid" and not pd.isna(n):
        text += f" (n={int(n)})"
    return Cell(text, rank, dagger=not pd.isna(n) and n < FID_DAGGER_BELOW)


def dataset_table(sub: pd.DataFrame, dataset: str) -> Table:
    sub = sub.reset_index(drop=True)
    ids = [c for c in ID_COLUMNS if c in ("Method", "Codebook size", "Prior") or sub[c].nunique(dropna=False) > 1]
    ids.append("Sequence")
    cells = [[Cell(NA if pd.isna(r[c]) else str(r[c])) for c in ids] for _, r in sub.iterrows()]
    eligible = [bool(f) for f in sub["Finished"]]
    for c in COLUMNS:
        rk = ranks(sub[c.key].astype(float).tolist(), c.better, c.decimals, eligible)
        for i, r in sub.iterrows():
            cells[i].append(_metric_cell(r, c, rk[i]))
    for i, r in sub.iterrows():
        cells[i].append(Cell(_runs_text(r)))
    columns = ([Column(SEQUENCE_LABEL if c == "Sequence" else c, numeric=c in ("Codebook size", "Sequence"))
                for c in ids]
               + [Column(c.label, c.better, True) for c in COLUMNS] + [Column("Runs")])
    return Table(f"Generation on {dataset}", columns, cells)


def notes(frame: pd.DataFrame, rows: pd.DataFrame) -> list[str]:
    """The lines under the generation tables: what the columns are, daggers, n/a reasons, priors
    that did not finish."""
    lines = [("Prior tokens: the length of the sequence the prior models (positions x indices per position); "
              "rFID: the tokenizer's reconstruction FID (its record); gFID, KID, IS, precision, recall: the "
              "prior's samples against the training split (n = generated images); NLL: held-out nats per token "
              "(not comparable across different Prior tokens or codebook sizes).")]
    small = [int(n) for c in COLUMNS if c.n_images for n, v in zip(frame[c.n_images], frame[c.key])
             if not pd.isna(n) and not pd.isna(v) and n < FID_DAGGER_BELOW]
    if small:
        lines.append(f"† FID from fewer than {FID_DAGGER_BELOW} images (n = {', '.join(map(str, sorted(set(small))))}): "
                     "biased upwards, not comparable with published numbers.")
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
    tables = [dataset_table(sub, str(d)) for d, sub in frame.groupby("Dataset", sort=False)] if len(frame) else []
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
