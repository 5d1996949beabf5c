"""`vqbench`: vqbench's own runs, evaluated as released tokenizers (a run trained elsewhere, a run
folder sent by someone else, an older version's run).

Files: a run folder `results/runs/<run_id>/` (record.json + checkpoint.safetensors), or the
checkpoint.safetensors itself with its record.json beside it or given as config_path. The record's
config (method, codebook_size, method_options, model) rebuilds the same model through the method
registry; the checkpoint's `model.*` tensors fill it (safetensors: nothing to unpickle). The
discriminator, optimizer and RNG state (`disc.*`, `opt_g.*`, `opt_d.*`, `rng.*`) are left out.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import methods
from bench.core import run_folder
from bench.core.errors import UserError
from bench.released.keymap import From, place
from bench.released.registry import Adapted, Sources, register_adapter
from bench.released.safe_load import read_checkpoint
from bench.released.weights import build_autoencoder, ignored_summary, load_placed
from bench.runs.presets import ModelPreset

IGNORED = {"disc.": "the PatchGAN discriminator of training", "opt_g.": "optimizer state", "opt_d.": "optimizer state",
           "rng.": "random-number generator state"}
_ARCH_FIELDS = [f.name for f in dataclasses.fields(ModelPreset) if f.name != "embed_dim"]


@register_adapter("vqbench")
def adapt_vqbench(src: Sources) -> Adapted:
    """A vqbench run folder, or its checkpoint.safetensors with the run's record.json."""
    folder = src.path if src.path.is_dir() else src.path.parent
    checkpoint = src.path / run_folder.CHECKPOINT if src.path.is_dir() else src.path
    record_path = src.config_path or folder / run_folder.RECORD
    for p, what in ((checkpoint, "checkpoint"), (record_path, "record")):
        if not p.is_file():
            raise UserError(f"vqbench run {src.path}: no {what} {p}")
    record = _read_json(record_path)
    config = record.get("config")
    if not isinstance(config, dict):
        raise UserError(f"record {record_path} has no config")
    model_cfg = _field(config, "model", record_path, dict)
    method = _field(config, "method", record_path, str)
    codebook_size = _field(config, "codebook_size", record_path, int)
    embed_dim = _field(model_cfg, "embed_dim", record_path, int)
    missing = [k for k in _ARCH_FIELDS if k not in model_cfg and k != "dropout"]
    if missing:
        raise UserError(f"record {record_path}: config.model.{missing[0]} is missing")
    arch = {k: tuple(model_cfg[k]) if isinstance(model_cfg.get(k), list) else model_cfg[k]
            for k in _ARCH_FIELDS if k in model_cfg}
    options = methods.build_options(method, **(config.get("method_options") or {}))
    model = build_autoencoder(methods.instantiate(method, codebook_size, embed_dim, options), arch)
    ckpt = read_checkpoint(checkpoint)
    if ckpt.format != "safetensors":
        raise UserError(f"checkpoint {checkpoint} is not a safetensors file (vqbench writes {run_folder.CHECKPOINT})")
    placement = place(ckpt.content, model, lambda k: From((f"model.{k}",)), checkpoint, ignore=IGNORED,
                      hint=f" (shapes from record {record_path})")
    meta = _step(ckpt.metadata)
    extra = {"run_id": record.get("run_id"), "status": record.get("status"), "dataset": config.get("dataset"),
             "preset": config.get("preset"), "steps": meta}
    return Adapted(load_placed(model, placement), method, codebook_size, embed_dim, options, arch,
                   int(arch["resolution"]), weights_key="model", files={"checkpoint": checkpoint, "config": record_path},
                   ignored=ignored_summary(placement, IGNORED), extra=extra)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise UserError(f"record {path} cannot be read as JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"record {path} is not a JSON object")
    return data


def _field(d: dict[str, Any], key: str, path: Path, kind: type) -> Any:
    value = d.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise UserError(f"record {path}: config field {key!r} is missing or not a {kind.__name__}")
    return value


def _step(metadata: dict[str, str]) -> int | None:
    try:
        return int(json.loads(metadata["vqbench"])["step"])
    except (KeyError, ValueError, TypeError):
        return None
