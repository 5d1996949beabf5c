"""How the speed tables are printed (GitHub markdown, 3 significant digits) and written (CSV, atomically)."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from tabulate import tabulate

from bench.core.atomic import atomic_path


def cell(v: Any) -> Any:
    """A table cell: floats to 3 significant digits (whole numbers from 100 up), None empty."""
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return "" if v is None else v


def fmt(rows: list[dict[str, Any]]) -> str:
    return tabulate([{k: cell(v) for k, v in r.items()} for r in rows], headers="keys", tablefmt="github")


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
