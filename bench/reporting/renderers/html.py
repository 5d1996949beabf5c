"""HTML tables for the report (bench.reporting.report): <strong> best, <u> second, <em> published
rows, notes as a list; one row per line so the page also reads as text."""
from __future__ import annotations

import html

from bench.reporting.renderers.base import Renderer, register_renderer
from bench.reporting.table_model import Cell, Table


@register_renderer
class Html(Renderer):
    name = "html"

    def cell(self, cell: Cell) -> str:
        text = html.escape(cell.text + ("†" if cell.dagger else ""))
        text = f"<strong>{text}</strong>" if cell.rank == 1 else f"<u>{text}</u>" if cell.rank == 2 else text
        return f"<em>{text}</em>" if cell.italic else text

    def table(self, table: Table) -> str:
        head = "".join(f"<th scope=\"col\">{html.escape(c.header)}</th>" for c in table.columns)
        body = "\n".join(
            "<tr>" + "".join(f"<td class=\"{'num' if col.numeric else 'txt'}\">{self.cell(c)}</td>"
                             for c, col in zip(row, table.columns)) + "</tr>" for row in table.rows)
        cap = f"<caption>{html.escape(table.title)}</caption>"
        return (f"<table class=\"results\">{cap}\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>"
                f"</table>")

    def notes(self, lines: list[str]) -> str:
        return "<ul class=\"notes\">\n" + "\n".join(f"<li>{html.escape(line)}</li>" for line in lines) + "\n</ul>"
