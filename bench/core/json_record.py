"""The shape every result record shares (a tokenizer run's `RunRecord`, a prior's `PriorRecord`): a
dataclass whose fields are the record's top-level keys, written as JSON atomically and read back as a
dict.

Keys a record does not know (from an older or newer version) are kept in its `extra` field and written
back unchanged, so reading and rewriting a record never loses anything; keys that only a driver adds
to the dict it hands around (`NOT_STORED`, e.g. "skipped") are dropped, never stored.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from bench.core.atomic import write_json_atomic

R = TypeVar("R", bound="JsonRecord")


class JsonRecord:
    """Mixin for a dataclass record that ends with `extra: dict[str, Any]`."""

    NOT_STORED: ClassVar[tuple[str, ...]] = ()
    extra: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}  # type: ignore[arg-type]
        return {**self.extra, **out}

    @classmethod
    def from_json(cls: type[R], data: dict[str, Any]) -> R:
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}  # type: ignore[arg-type]
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names and k not in cls.NOT_STORED}
        return cls(**known, extra=extra)

    def write_to(self, path: Path) -> Path:
        write_json_atomic(path, self.to_json())
        return path


def read_json_record(path: Path | str) -> dict[str, Any] | None:
    """The record at `path` as a dict, or None when there is none, or only a torn one (which a record
    written atomically never is: such a file is treated as absent and its run is redone)."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
