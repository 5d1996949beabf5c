"""Markdown pipe tables: best **bold**, second <u>underlined</u>, published rows in *italics*,
notes as a list."""
from __future__ import annotations

from bench.reporting.renderers.base import Renderer, register_renderer
from bench.reporting.table_model import Cell, Table


def _escape(text: str) -> str:
    return text.replace("|", r"\|")


@register_renderer
class Markdown(Renderer):
    name = "md"
    extension = "md"

    def cell(self, cell: Cell) -> str:
        text = _escape(cell.text + ("†" if cell.dagger else ""))
        text = f"**{text}**" if cell.rank == 1 else f"<u>{text}</u>" if cell.rank == 2 else text
        return f"*{text}*" if cell.italic and not cell.empty else text

    def table(self, table: Table) -> str:
        lines = ["| " + " | ".join(_escape(c.header) for c in table.columns) + " |",
                 "|" + "|".join("---:" if c.numeric else ":---" for c in table.columns) + "|"]
        lines += ["| " + " | ".join(self.cell(c) for c in row) + " |" for row in table.rows]
        return f"### {table.title}\n\n" + "\n".join(lines)

    def notes(self, lines: list[str]) -> str:
        return "\n".join(f"- {line}" for line in lines)
