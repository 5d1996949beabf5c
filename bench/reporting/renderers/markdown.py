"""Markdown pipe tables: best **bold**, second <u>underlined</u>, published rows in *italics*,
notes as a list."""
from __future__ import annotations

from bench.reporting.renderers.base import register_renderer
from bench.reporting.renderers.markup import MarkupRenderer
from bench.reporting.table_model import Table


@register_renderer
class Markdown(MarkupRenderer):
    name = "md"
    extension = "md"
    bold, underline, italic = "**%s**", "<u>%s</u>", "*%s*"
    row_start, sep, row_end = "| ", " | ", " |"

    def escape(self, text: str) -> str:
        return text.replace("|", r"\|")

    def opening(self, table: Table) -> list[str]:
        return [f"### {table.title}", ""]

    def header_rule(self, table: Table) -> list[str]:
        return ["|" + "|".join("---:" if c.numeric else ":---" for c in table.columns) + "|"]

    def notes(self, lines: list[str]) -> str:
        return "\n".join(f"- {line}" for line in lines)
