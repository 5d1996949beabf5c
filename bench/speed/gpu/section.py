"""What every section of the GPU check shares: its settings (`Context`) and the summary table it appends
to (`Section`): a `## heading`, one line on what is measured and how, and a markdown table whose rows
are written, flushed and fsync'ed one by one as each is measured, and printed as they are. The check
gets one try on a machine lent for minutes and every step runs under a timeout, so a section killed
mid-way must leave every row it had finished, readable on its own.
"""
from __future__ import annotations

import gc
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.speed.output import cell

NOTE = "note"  # the last column of every table: what a row needs said, and a failed row's error
MAX_NOTE = 300  # characters of an error kept in its row: one line of a table, not a traceback


def one_line(exc: BaseException) -> str:
    """`Type: first line of the message`, short enough for a table cell."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else 'no message'}"[:MAX_NOTE]


def markdown_cell(value: Any) -> str:
    """One cell: the speed tables' number format (bench.speed.output.cell), yes/no for booleans, and
    nothing that would end the cell or the row."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(cell(value)).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |\n"


def append_durably(path: Path, text: str) -> None:
    """Append `text` and make it reach the disk before returning: a kill a moment later keeps it."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    print(text, end="", flush=True)


def release_memory() -> None:
    """After a failed row (an out-of-memory error most of all): hand its memory back before the next.
    torch.cuda.empty_cache does nothing where CUDA was never initialised (a CPU run opens no context)."""
    gc.collect()
    torch.cuda.empty_cache()


class Section:
    """One section's table in the summary. `row` writes one row at once; `attempt` measures one row
    and writes it, or writes the error in its note and goes on."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        if not columns or columns[-1] != NOTE:
            raise ValueError(f"a section's last column must be {NOTE!r}, got {columns}")
        self.path, self.columns = path, list(columns)

    @classmethod
    def start(cls, path: Path, title: str, about: str, columns: list[str]) -> Section:
        """Append the heading, the line saying what is measured, and the table's header."""
        section = cls(path, columns)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = markdown_row(columns) + markdown_row(["---"] * len(columns))
        append_durably(path, f"\n## {title}\n\n{about}\n\n{header}")
        return section

    def row(self, values: dict[str, Any]) -> None:
        unknown = set(values) - set(self.columns)
        if unknown:
            raise ValueError(f"columns {sorted(unknown)} are not in this table's {self.columns}")
        append_durably(self.path, markdown_row([markdown_cell(values.get(c)) for c in self.columns]))

    def attempt(self, keys: dict[str, Any], measure: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        """`measure()`'s values written beside `keys`; on an exception, `keys` and the error in the note
        (None returned), so that one failing row costs only itself."""
        try:
            values = measure()
        except Exception as exc:  # noqa: BLE001 - a failing row prints its error and the section goes on
            release_memory()
            self.row({**keys, NOTE: f"error: {one_line(exc)}"})
            return None
        self.row({**keys, **values})
        return values


@dataclass(frozen=True)
class Context:
    """What a section is asked to do: where its table goes, on which device, and `quick` (the CPU
    rehearsal's small sizes, seconds per section)."""

    summary: Path
    device: torch.device
    quick: bool

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def where(self) -> str:
        """The device and versions, for each section's line (summary.md is read on its own)."""
        if self.cuda:
            props = torch.cuda.get_device_properties(self.device)
            what = f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"
            return f"{what}, torch {torch.__version__}, CUDA {torch.version.cuda}"
        threads = torch.get_num_threads()
        return f"CPU ({threads} thread{'s' if threads > 1 else ''}), torch {torch.__version__}"

    def section(self, title: str, about: str, columns: list[str]) -> Section:
        mode = " Quick mode (small sizes: a rehearsal of the plumbing, not a measurement)." if self.quick else ""
        return Section.start(self.summary, title, f"{about} On {self.where()}.{mode}", columns)

    def crashed(self, section: str, exc: BaseException) -> None:
        """The line a crashed section leaves under its table."""
        append_durably(self.summary, f"\n**{section} stopped**: {one_line(exc)}\n")
