"""CSV: the frame behind the tables itself (every mean, std and count), machine readable."""
from __future__ import annotations

from bench.reporting.renderers.base import Renderer, register_renderer
from bench.reporting.table_model import Document


@register_renderer
class Csv(Renderer):
    name = "csv"
    extension = "csv"

    def document(self, doc: Document) -> str:
        return doc.data.to_csv(index=False)
