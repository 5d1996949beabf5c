"""Published numbers (bench/reported_results.csv) as rows of the summary frame, marked "reported".

The data file says where each number comes from (paper, table, URL) and under which protocol it was
measured; the tables show them in italics with a reference marker and never rank them against
measured rows.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from bench.evaluation.metrics import keys
from bench.evaluation.metrics.registry import spec
from bench.reporting.frames import INDICES, POSITIONS, REPORTED

DATA_FILE = Path(__file__).resolve().parent / "reported_results.csv"
REQUIRED = ("ref", "paper", "table", "url", "dataset", "method", "codebook_size", "protocol")
METRIC_COLUMNS = (keys.FID, keys.PSNR, keys.SSIM, keys.LPIPS, keys.UTILIZATION, keys.PERPLEXITY)
# The data file's code counts (what each counts: the comment at its top) and the table columns
# they fill; `tokens` (the source's own count) fills none and is kept as TOKENS_AS_REPORTED.
LAYOUT = {"positions": POSITIONS, "indices_per_image": INDICES}
TOKENS_AS_REPORTED = "tokens_as_reported"


def _count(value) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def load(path: Path | str = DATA_FILE) -> pd.DataFrame:
    """The data file as is (utilisation as a fraction), after checking every row names its source."""
    df = pd.read_csv(path, comment="#", dtype={"vqbench_method": str})
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    bad = df[df[list(REQUIRED)].isna().any(axis=1)]
    if len(bad):
        raise ValueError(f"{path}: rows {list(bad.index)} lack a source or protocol field")
    df["vqbench_method"] = df["vqbench_method"].fillna("")
    return df


def reported_rows(datasets: Sequence[str] | None = None, methods: Sequence[str] | None = None,
                  metrics: Sequence[str] | None = None, path: Path | str = DATA_FILE) -> pd.DataFrame:
    """Rows shaped like the per-dataset frame's rows (Source "reported"), for the given datasets and
    (by their vqbench name) methods. Metric values are scaled as the tables show them."""
    df = load(path)
    if datasets is not None:
        df = df[df["dataset"].isin(list(datasets))]
    if methods:
        df = df[df["vqbench_method"].isin(list(methods))]
    rows = []
    for _, r in df.iterrows():
        row = {"Dataset": r["dataset"], "Method": r["method"], "Codebook size": int(r["codebook_size"]),
               **{col: _count(r.get(field)) for field, col in LAYOUT.items()},
               TOKENS_AS_REPORTED: _count(r.get("tokens")), "Source": REPORTED, "Ref": r["ref"],
               "Finished": 0, "Failed": 0, "Expected": 0, "Status": REPORTED,
               "fid_n_images": math.nan if pd.isna(r.get("fid_n_images")) else float(r["fid_n_images"]),
               "paper": r["paper"], "table": r["table"], "url": r["url"], "protocol": r["protocol"]}
        for k in (metrics or METRIC_COLUMNS):
            v = r.get(k)
            row[k] = math.nan if v is None or pd.isna(v) else float(v) * spec(k).scale
        rows.append(row)
    return pd.DataFrame(rows)
