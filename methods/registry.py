"""Decorator registry of quantizers: `@register_method("name")`, `create(name, K, dim, **options)`.

Each method class carries its hyperparameters as a dataclass in `Options`; `create` builds it from
keyword options so that a misspelt option fails loudly instead of being ignored.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, Callable

from bench.core.errors import UserError

from .base import Quantizer


@dataclass(frozen=True)
class MethodEntry:
    name: str
    cls: type
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)  # option overrides of a registered variant


_REGISTRY: dict[str, MethodEntry] = {}


def register_method(name: str, description: str | None = None, **defaults: Any) -> Callable[[type], type]:
    """Register a Quantizer class under `name`. Stack the decorator to register variants: extra
    keyword arguments become that variant's option defaults (e.g. an ablation switch)."""

    def wrap(cls: type) -> type:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is already registered by {_REGISTRY[name].cls.__qualname__}")
        if not (isinstance(cls, type) and issubclass(cls, Quantizer)):
            raise TypeError(f"{cls!r} must subclass methods.base.Quantizer")
        if not dataclasses.is_dataclass(getattr(cls, "Options", None)):
            raise TypeError(f"{cls.__qualname__} needs an `Options` dataclass of its hyperparameters")
        _check_options(name, cls.Options, defaults)
        _REGISTRY[name] = MethodEntry(name, cls, description or _first_line(cls.__doc__), dict(defaults))
        return cls

    return wrap


def available() -> list[str]:
    return sorted(_REGISTRY)


def entry(name: str) -> MethodEntry:
    if name not in _REGISTRY:
        raise UserError(unknown_name_message("method", name, available()))
    return _REGISTRY[name]


def describe() -> dict[str, str]:
    """One line per registered method, for `--list`."""
    return {name: _REGISTRY[name].description for name in available()}


def build_options(name: str, **options: Any) -> Any:
    """The method's Options dataclass with variant defaults, then the given options, applied."""
    e = entry(name)
    merged = {**e.defaults, **options}
    _check_options(name, e.cls.Options, merged)
    return e.cls.Options(**merged)


def create(name: str, codebook_size: int, dim: int, **options: Any) -> Quantizer:
    """Build the quantizer `name` with K = codebook_size codes of embedding dimension `dim`."""
    if int(codebook_size) < 1:
        raise UserError(f"codebook size must be a positive integer, got {codebook_size}")
    if int(dim) < 1:
        raise UserError(f"embedding dim must be a positive integer, got {dim}")
    opts = build_options(name, **options)
    return entry(name).cls(int(codebook_size), int(dim), opts)


def _check_options(name: str, options_cls: type, given: dict[str, Any]) -> None:
    valid = [f.name for f in dataclasses.fields(options_cls)]
    for key in given:
        if key not in valid:
            raise UserError(
                f"method {name!r} has no option {key!r}"
                + _suggest(key, valid)
                + f"; its options are: {', '.join(valid) or '(none)'}"
            )


def _first_line(doc: str | None) -> str:
    lines = (doc or "").strip().splitlines()
    return lines[0] if lines else ""


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def unknown_name_message(kind: str, name: str, choices: list[str]) -> str:
    """`unknown method 'vqgn' (did you mean 'vqgan'?); available: ...` — shared by every registry."""
    return f"unknown {kind} {name!r}" + _suggest(name, choices) + f"; available: {', '.join(choices)}"
