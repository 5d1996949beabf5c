"""`load_released(kind, path)`: a released tokenizer as the evaluator's model plus its description."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.core.errors import UserError
from bench.core.hashing import file_digest
from bench.models.autoencoder import VQAutoencoder
from bench.released.registry import ADAPTERS, Adapted, Sources

SOURCE = "released"  # the description's `source`: never mixed with trained runs in tables


@dataclass
class Released:
    model: VQAutoencoder  # eval mode, on the CPU (.to(device) it); forward(x in [-1, 1]) -> (xrec, QuantOut)
    description: dict[str, Any]  # JSON-ready: what was loaded, from which bytes, as which method and options


def load_released(kind: str, path: Path | str, config_path: Path | str | None = None,
                  prior_path: Path | str | None = None) -> Released:
    """Load a released tokenizer of `kind` (see `bench.released.kinds()`) from local files.

    `path`: the checkpoint (vqbench: a run folder or its checkpoint.safetensors). `config_path`: the
    YAML config of a taming or VQCT checkpoint (default: the one in configs/ beside it), or a vqbench
    record.json. `prior_path`: VQCT's word-prior pickle (default: big_nlp_word_knowledge_clip.pkl
    beside the checkpoint or the config, or in a codebook_priors/ folder above them). Bad files raise
    a one-line UserError naming the key or setting; nothing in the files is executed."""
    name = ADAPTERS.canonical(kind)
    src = Sources(_existing(path, "checkpoint"), _optional(config_path, "config"), _optional(prior_path, "prior"))
    adapted = ADAPTERS.get(name)(src)
    return Released(adapted.model, description_of(name, src, adapted))


def parse_spec(spec: str) -> tuple[str, Path]:
    """`KIND:PATH` (the CLI's --checkpoint) -> (kind, path); the kind is checked, the path is not."""
    kind, sep, path = spec.partition(":")
    if not sep or not kind or not path:
        raise UserError(f"--checkpoint takes KIND:PATH (kinds: {', '.join(ADAPTERS.names())}), got {spec!r}")
    return ADAPTERS.canonical(kind), Path(path)


def description_of(kind: str, src: Sources, adapted: Adapted) -> dict[str, Any]:
    """The record's description of a released tokenizer."""
    files = {role: {"path": str(p), "sha256": sha256_file(p)} for role, p in adapted.files.items()}
    options = adapted.method_options
    return {
        "source": SOURCE,
        "kind": kind,
        "path": str(src.path),
        "sha256": files["checkpoint"]["sha256"],  # of the checkpoint file itself (vqbench: the run's safetensors)
        "files": files,
        "method": adapted.method,
        "codebook_size": adapted.codebook_size,
        "embed_dim": adapted.embed_dim,
        "method_options": dataclasses.asdict(options) if dataclasses.is_dataclass(options) else dict(options),
        "model": {k: list(v) if isinstance(v, tuple) else v for k, v in adapted.architecture.items()},
        "resolution": adapted.resolution,
        "weights_key": adapted.weights_key,
        "ignored_keys": dict(adapted.ignored),
        "stand_ins": list(adapted.stand_ins),
        "notes": list(adapted.notes),
        "details": dict(adapted.extra),
    }


def sha256_file(path: Path) -> str:
    return file_digest(path, "sha256")


def _existing(path: Path | str, what: str) -> Path:
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise UserError(f"{what} {path} does not exist")
    return p


def _optional(path: Path | str | None, what: str) -> Path | None:
    return None if path is None else _existing(path, what)
