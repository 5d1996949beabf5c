"""What the Markdown and LaTeX renderers share: a table is an opening, the header row, a rule, one
delimited line per row and a closing, and a cell's marks (bold best, underlined second, italic
published rows) wrap its escaped text. Each format gives only its escaping, its wrappers and its
delimiters."""
from __future__ import annotations

from typing import ClassVar

from bench.reporting.renderers.base import Renderer
from bench.reporting.table_model import Cell, Table


class MarkupRenderer(Renderer):
    # %s templates around a cell's escaped text
    bold: ClassVar[str]
    underline: ClassVar[str]
    italic: ClassVar[str]
    # one table row is row_start + sep.join(cells) + row_end
    row_start: ClassVar[str] = ""
    sep: ClassVar[str]
    row_end: ClassVar[str] = ""

    def escape(self, text: str) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def opening(self, table: Table) -> list[str]:
        """Lines before the header row."""
        return []

    def header_rule(self, table: Table) -> list[str]:
        """Lines between the header row and the first row."""
        return []

    def closing(self, table: Table) -> list[str]:
        """Lines after the last row."""
        return []

    def cell(self, cell: Cell) -> str:
        text = self.escape(cell.text + ("†" if cell.dagger else ""))
        text = self.bold % text if cell.rank == 1 else self.underline % text if cell.rank == 2 else text
        # an empty published cell stays a bare dash: italics around it would only add noise
        return self.italic % text if cell.italic and not cell.empty else text

    def row(self, texts: list[str]) -> str:
        return self.row_start + self.sep.join(texts) + self.row_end

    def table(self, table: Table) -> str:
        lines = self.opening(table) + [self.row([self.escape(c.header) for c in table.columns])]
        lines += self.header_rule(table)
        lines += [self.row([self.cell(c) for c in row]) for row in table.rows]
        return "\n".join(lines + self.closing(table))
