"""Adapters of released checkpoints, registered by kind (`taming`, `vqct`, `llamagen`, `vqbench`).

An adapter reads the files of one kind (with bench.released.safe_load, never plain unpickling) and
returns an `Adapted`: the shared autoencoder with a registered quantizer, every weight placed, and
what it did to get there (for the record). It refuses with a one-line UserError naming the key or
the setting it cannot map.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.core.registry import Registry
from bench.models.autoencoder import VQAutoencoder


@dataclass(frozen=True)
class Sources:
    """The files of one released tokenizer. Which ones a kind needs is in its adapter's docstring."""

    path: Path  # the checkpoint (or, for vqbench, a run folder)
    config_path: Path | None = None  # taming/vqct: the YAML config; vqbench: record.json
    prior_path: Path | None = None  # vqct: the word-prior pickle of the official repository


@dataclass
class Adapted:
    model: VQAutoencoder  # in eval mode, every weight from the files
    method: str  # the registered method the quantizer is (methods.available())
    codebook_size: int
    embed_dim: int
    method_options: Any  # the method's Options dataclass as built
    architecture: dict[str, Any]  # the autoencoder's arguments (ch, ch_mult, ...), as a ModelPreset has them
    resolution: int  # the resolution the tokenizer was trained at (its config's, or LlamaGen's image size)
    weights_key: str | None = None  # where in the file the weights were ("state_dict", "model", "ema", ...)
    files: dict[str, Path] = field(default_factory=dict)  # every file read: "checkpoint", "config", "prior"
    ignored: dict[str, str] = field(default_factory=dict)  # key prefix of the file left out -> "<n> keys: why"
    stand_ins: list[str] = field(default_factory=list)  # bookkeeping objects read as inert stand-ins
    notes: list[str] = field(default_factory=list)  # how evaluation differs from the released code, if it does
    extra: dict[str, Any] = field(default_factory=dict)  # kind-specific facts for the record (prior sizes, run id)


Adapter = Callable[[Sources], Adapted]


def _check(name: str, adapter: Adapter) -> None:
    if not callable(adapter) or len(inspect.signature(adapter).parameters) != 1:
        raise TypeError(f"released adapter {name!r} must be a function of one Sources argument")


ADAPTERS: Registry[Adapter] = Registry("released checkpoint kind", _check)
register_adapter = ADAPTERS.register


def kinds() -> list[str]:
    """Registered kinds, sorted."""
    return ADAPTERS.names()


def describe() -> dict[str, str]:
    """One line per kind: the first line of its adapter's docstring."""
    return {name: (inspect.getdoc(fn) or "").splitlines()[0] for name, fn in ADAPTERS.items()}
