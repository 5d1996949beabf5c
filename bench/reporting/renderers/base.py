"""The renderer registry: one `Renderer` per table format, registered by name (bench.core.registry)."""
from __future__ import annotations

from typing import ClassVar

from bench.core.registry import Registry
from bench.reporting.table_model import Document, Table


class Renderer:
    """Turns a `Document` into the text of one format. Subclasses give `table` and `notes`; a format
    that writes the data itself rather than tables (CSV) overrides `document`."""

    name: ClassVar[str]
    extension: ClassVar[str | None] = None  # written as OUT/tables/<stem>.<extension> when set

    def document(self, doc: Document) -> str:
        if not doc.tables:
            return "(no results)"
        parts = [self.table(t) for t in doc.tables]
        if doc.notes:
            parts.append(self.notes(doc.notes))
        return "\n\n".join(parts) + "\n"

    def table(self, table: Table) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def notes(self, lines: list[str]) -> str:  # pragma: no cover - interface
        raise NotImplementedError


def _check(name: str, renderer: Renderer) -> None:
    if not isinstance(renderer, Renderer):
        raise TypeError(f"table format {name!r}: {type(renderer).__name__} is not a Renderer")
    if renderer.name != name:
        raise ValueError(f"renderer registered as {name!r} is named {renderer.name!r}")


RENDERERS: Registry[Renderer] = Registry("table format", _check)


def register_renderer(cls: type[Renderer]) -> type[Renderer]:
    """Class decorator: registers one instance under `cls.name`."""
    RENDERERS.add(cls.name, cls())
    return cls
