"""The steps every adapter shares: the file's flat weights, the shared autoencoder around a
quantizer, and loading a placed state dict into it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bench.core.errors import UserError
from bench.models.autoencoder import VQAutoencoder
from bench.released.keymap import Placement
from bench.released.safe_load import CheckpointFile, read_checkpoint, tensor_dict
from methods.base import Quantizer


def read_weights(path: Path, keys: tuple[str, ...]) -> tuple[dict[str, Tensor], str | None, CheckpointFile]:
    """(flat weights, the entry they came from, the file). The weights are the first of `keys` found
    at the file's top level (Lightning: "state_dict"; LlamaGen: "ema", then "model"), or the top
    level itself when it is already a flat dict of tensors (a re-saved weights.pt, a .safetensors)."""
    ckpt = read_checkpoint(path, weights_key=keys[0] if keys else None)
    content = ckpt.content
    if not isinstance(content, dict):
        raise UserError(f"checkpoint {path} holds a {type(content).__name__}, not a dict of weights")
    for key in keys:
        if key in content:
            return tensor_dict(content[key], path, f"entry {key!r}"), key, ckpt
    if content and all(isinstance(v, torch.Tensor) for v in content.values()):
        return tensor_dict(content, path, "the file"), None, ckpt
    found = ", ".join(repr(k) for k in list(content)[:6])
    raise UserError(f"checkpoint {path} has no {' or '.join(repr(k) for k in keys)} entry and is not a flat dict of "
                    f"tensors (its top-level keys: {found})")


def build_autoencoder(quantizer: Quantizer, arch: dict[str, Any]) -> VQAutoencoder:
    return VQAutoencoder(quantizer, **arch)


def load_placed(model: VQAutoencoder, placement: Placement) -> VQAutoencoder:
    """Load a complete placed state dict (strict: `place` already matched every key) and set eval mode."""
    model.load_state_dict(placement.state, strict=True)
    return model.eval()


def ignored_summary(placement: Placement, reasons: dict[str, str]) -> dict[str, str]:
    """prefix -> "<n> keys: <why>", for the prefixes that matched something."""
    return {p: f"{n} keys: {reasons[p]}" for p, n in placement.ignored.items() if n}
