"""The result tables of a `Summary` (bench.reporting.summary): rendered in one format, or written
as files under OUT/tables/.

Per dataset, the paper layout: one row per method and codebook size, the mean and sample std over
finished seeds, best bold and second underlined, failed and missing runs kept. Published numbers
(bench.reporting.reported) join as rows marked "reported" and never take part in best/second marks,
because their protocols differ from ours. Across datasets (several datasets shown): one metric,
methods as rows, datasets as columns.
"""
from __future__ import annotations

from pathlib import Path

from bench.core.atomic import write_text_atomic
from bench.reporting import footnotes, frames, renderers, sequential, table_model
from bench.reporting.frames import DEFAULT_GROUP_BY, GROUP_FIELDS, MEASURED, REPORTED, metrics_of
from bench.reporting.summary import Summary, build

TABLES = "tables"  # OUT/tables/
# The frames of records, before intervals and marks (the Summary adds them).
frame = frames.runs_frame
summary = frames.dataset_frame


def formats() -> list[str]:
    """Every registered table format (bench.reporting.renderers)."""
    return renderers.formats()


def render(summary: Summary, fmt: str = "terminal", notes: bool = True) -> str:
    """The per-dataset tables and their notes in format `fmt`. CSV is the per-dataset frame itself."""
    df = summary.per_dataset
    refs = footnotes.reference_numbers(df) if len(df) else {}
    tables = table_model.dataset_tables(df, refs) if len(df) else []
    lines = (footnotes.dataset_notes(df, summary.reported, summary.failures, summary.comparisons,
                                     sequential.load(summary.out)) if notes and len(df) else [])
    return renderers.get(fmt).document(table_model.Document(tables, lines, df))


def render_cross(summary: Summary, fmt: str = "terminal") -> str:
    """The cross-dataset table in format `fmt`; ValueError when the summary has none (one dataset)."""
    cross = summary.cross
    if cross is None:
        raise ValueError("no cross-dataset table: the summary covers one dataset")
    table = table_model.cross_table(cross, footnotes.reference_numbers(cross))
    lines = footnotes.cross_notes(cross, summary.reported)
    return renderers.get(fmt).document(table_model.Document([table], lines, cross))


def write_tables(summary: Summary, out: Path | str | None = None, stem: str = "results") -> list[Path]:
    """OUT/tables/<stem>.<ext> for every file format (md, csv, tex), and <stem>_summary.<ext> for the
    cross-dataset table; each written atomically, so a reader never sees half a table."""
    folder = Path(summary.out if out is None else out) / TABLES
    paths = []
    for fmt in renderers.file_formats():
        ext = renderers.get(fmt).extension
        items = [(folder / f"{stem}.{ext}", render(summary, fmt))]
        if summary.cross is not None:
            items.append((folder / f"{stem}_summary.{ext}", render_cross(summary, fmt)))
        for path, text in items:
            write_text_atomic(path, text)
            paths.append(path)
    return paths


__all__ = [
    "DEFAULT_GROUP_BY",
    "GROUP_FIELDS",
    "MEASURED",
    "REPORTED",
    "TABLES",
    "Summary",
    "build",
    "formats",
    "frame",
    "metrics_of",
    "render",
    "render_cross",
    "summary",
    "write_tables",
]
