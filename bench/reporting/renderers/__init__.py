"""One renderer per table format (terminal, md, csv, tex, html), each in its own module and
registered by name in `RENDERERS`. Adding a format is one module with a `Renderer` subclass plus
its import line below."""
from __future__ import annotations

from bench.reporting.renderers import csv, html, latex, markdown, terminal  # noqa: F401 - they register
from bench.reporting.renderers.base import RENDERERS, Renderer, register_renderer

# The order formats are listed and files are written in; formats registered elsewhere come after.
ORDER = ("terminal", "md", "csv", "tex", "html")


def formats() -> list[str]:
    return [n for n in ORDER if n in RENDERERS] + [n for n in RENDERERS.names() if n not in ORDER]


def get(name: str) -> Renderer:
    """The renderer of a format; an unknown name is a UserError that suggests the closest ones."""
    return RENDERERS.get(name)


def file_formats() -> list[str]:
    """Formats written under OUT/tables/ (those with a file extension)."""
    return [n for n in formats() if RENDERERS.get(n).extension]


__all__ = ["RENDERERS", "Renderer", "file_formats", "formats", "get", "register_renderer"]
