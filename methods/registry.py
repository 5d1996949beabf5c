"""Decorator registry of quantizers: `@register_method("name")`, `create(name, K, dim, **options)`.

Each method class carries its hyperparameters as a dataclass in `Options`; `build_options` makes it
from keyword options (a misspelt option fails with a suggestion, a value of the wrong type names the
type it needs), and `validate` runs the class's own `check` plus a memory estimate, so an impossible
configuration fails before any run starts.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Callable

from bench.core.errors import UserError
from bench.core.option_ranges import check_fields
from bench.core.options import coerce_options
from bench.core.registry import Registry, suggest, unknown_name_message

from .base import Quantizer

# Weights, their gradients and Adam's two moments: what training holds per parameter, in float32.
TRAINING_BYTES_PER_PARAMETER = 4 * 4


@dataclass(frozen=True)
class MethodEntry:
    name: str
    cls: type
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)  # option overrides of a registered variant


def _check_entry(name: str, e: MethodEntry) -> None:
    if not (isinstance(e.cls, type) and issubclass(e.cls, Quantizer)):
        raise TypeError(f"{e.cls!r} must subclass methods.base.Quantizer")
    if not dataclasses.is_dataclass(getattr(e.cls, "Options", None)):
        raise TypeError(f"{e.cls.__qualname__} needs an `Options` dataclass of its hyperparameters")
    _check_option_names(name, e.cls.Options, e.defaults)


_REGISTRY: Registry[MethodEntry] = Registry("method", _check_entry)


def register_method(name: str, description: str | None = None, **defaults: Any) -> Callable[[type], type]:
    """Register a Quantizer class under `name`. Stack the decorator to register variants: extra
    keyword arguments become that variant's option defaults (e.g. an ablation switch)."""

    def wrap(cls: type) -> type:
        _REGISTRY.add(name, MethodEntry(name, cls, description or _first_line(cls.__doc__), dict(defaults)))
        return cls

    return wrap


def available() -> list[str]:
    return _REGISTRY.names()


def entry(name: str) -> MethodEntry:
    return _REGISTRY.get(name)


def describe() -> dict[str, str]:
    """One line per registered method, for `--list`."""
    return {name: e.description for name, e in _REGISTRY.items()}


def build_options(name: str, **options: Any) -> Any:
    """The method's Options dataclass with variant defaults, then the given options, applied; every
    value converted to its field's type (a wrong type is a UserError naming the option)."""
    e = entry(name)
    merged = {**e.defaults, **options}
    _check_option_names(name, e.cls.Options, merged)
    return e.cls.Options(**coerce_options(f"method {name!r}", e.cls.Options, merged))


def validate(name: str, codebook_size: int, dim: int, options: Any) -> None:
    """Everything that can be known about (method, K, dim, options) without building it: the class's
    own `check` (power-of-two K for LFQ, K within a vocabulary, ...) and whether the parameters it
    would train fit in this machine's memory."""
    if int(codebook_size) < 1:
        raise UserError(f"codebook size must be a positive integer, got {codebook_size}")
    if int(dim) < 1:
        raise UserError(f"embedding dim must be a positive integer, got {dim}")
    cls = entry(name).cls
    check_fields(f"method {name!r}", options)  # ranges declared beside the defaults (bench.core.option_ranges)
    cls.check(int(codebook_size), int(dim), options)
    need = cls.parameter_count(int(codebook_size), int(dim), options) * TRAINING_BYTES_PER_PARAMETER
    have = machine_memory_bytes()
    if have and need > have:
        raise UserError(f"method {name!r} with K={codebook_size} (dim {dim}) would train about "
                        f"{need / 2**30:,.1f} GiB of quantizer parameters (weights, gradients, Adam state), more "
                        f"than this machine's {have / 2**30:,.1f} GiB of memory; choose a smaller --codebook-sizes")


def create(name: str, codebook_size: int, dim: int, **options: Any) -> Quantizer:
    """Build the quantizer `name` with K = codebook_size codes of embedding dimension `dim`."""
    return instantiate(name, codebook_size, dim, build_options(name, **options))


def instantiate(name: str, codebook_size: int, dim: int, options: Any) -> Quantizer:
    """Build from an Options instance (as `build_options` returns it), after `validate`."""
    validate(name, codebook_size, dim, options)
    return entry(name).cls(int(codebook_size), int(dim), options)


def machine_memory_bytes() -> int | None:
    """Physical memory of this machine (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _check_option_names(name: str, options_cls: type, given: dict[str, Any]) -> None:
    valid = [f.name for f in dataclasses.fields(options_cls)]
    for key in given:
        if key not in valid:
            raise UserError(
                f"method {name!r} has no option {key!r}"
                + suggest(key, valid)
                + f"; its options are: {', '.join(valid) or '(none)'}"
            )


def _first_line(doc: str | None) -> str:
    lines = (doc or "").strip().splitlines()
    return lines[0] if lines else ""


__all__ = ["MethodEntry", "available", "build_options", "create", "describe", "entry", "instantiate",
           "machine_memory_bytes", "register_method", "unknown_name_message", "validate"]
