"""The notes under the tables, as plain text lines: rFID daggers, sources of published rows, failed
runs and missing grid cells. Renderers only format the lines."""
from __future__ import annotations

import pandas as pd

from bench.evaluation.metrics import keys
from bench.reporting.frames import REPORTED
from bench.reporting.table_model import FID_DAGGER_BELOW


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


def dataset_notes(df: pd.DataFrame, reported: pd.DataFrame | None = None,
                  failures: pd.DataFrame | None = None) -> list[str]:
    """The notes under the per-dataset tables."""
    notes = []
    if "fid_n_images" in df.columns and keys.FID in df.columns:
        small = df[(df["fid_n_images"] < FID_DAGGER_BELOW) & df[keys.FID].notna()]
        if len(small):
            ns = ", ".join(str(int(n)) for n in sorted(set(small["fid_n_images"])))
            notes.append(f"† rFID from fewer than {FID_DAGGER_BELOW} images (n = {ns}): biased upwards, not "
                         f"comparable with published rFIDs.")
    if "Source" in df.columns and (df["Source"] == REPORTED).any():
        notes.append("Rows in italics marked [Rn] are published numbers, not measured by vqbench; their protocols "
                     "differ and they take no part in best/second marks.")
        for ref, n in reference_numbers(df).items():
            notes.append(f"[R{n}] {reference_text(ref, reported)}")
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
    n_cols = [c for c in cross.columns if c.endswith("_fid_n_images")]
    if n_cols and any((cross[c] < FID_DAGGER_BELOW).any() for c in n_cols):
        notes.append(f"† rFID from fewer than {FID_DAGGER_BELOW} images: not comparable with published rFIDs.")
    notes += [f"[R{n}] {reference_text(ref, reported)}" for ref, n in reference_numbers(cross).items()]
    return notes
