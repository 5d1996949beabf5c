"""Plain text for the terminal: GitHub-style grids (tabulate), no bold: a best (or tied-best) cell
ends in " *"; underlines are not shown."""
from __future__ import annotations

from tabulate import tabulate

from bench.reporting.renderers.base import Renderer, register_renderer
from bench.reporting.table_model import Cell, Table


@register_renderer
class Terminal(Renderer):
    name = "terminal"

    def cell(self, cell: Cell) -> str:
        return cell.text + ("†" if cell.dagger else "") + (" *" if cell.rank == 1 else "")

    def table(self, table: Table) -> str:
        body = [[self.cell(c) for c in row] for row in table.rows]
        grid = tabulate(body, headers=[c.header for c in table.columns], tablefmt="github", disable_numparse=True)
        return f"{table.title}\n{grid}"

    def notes(self, lines: list[str]) -> str:
        return "\n".join(lines)
