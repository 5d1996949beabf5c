"""Training checkpoints in one safetensors file: module weights, optimizer state, RNG state and step.

Everything lives in one file written to a temp name and `os.replace`d, so a kill mid-write leaves the
previous checkpoint intact. Non-tensor state (step, optimizer hyperparameters) goes into the
file's string metadata as JSON.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

CKPT_NAME = "checkpoint.safetensors"


def _flatten_optimizer(prefix: str, opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    sd = opt.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for pid, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.state.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    meta[prefix] = {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(prefix: str, opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith(prefix + ".state."):
            pid, key = name[len(prefix) + 7 :].split(".", 1)
            state.setdefault(int(pid), {})[key] = value
    for pid, scalars in meta[prefix]["scalars"].items():
        state.setdefault(int(pid), {}).update(scalars)
    opt.load_state_dict({"state": state, "param_groups": meta[prefix]["param_groups"]})


def save_checkpoint(path: Path, step: int, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer]) -> None:
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {"step": step}
    for name, module in modules.items():
        for key, value in module.state_dict().items():
            tensors[f"{name}.{key}"] = value.detach().cpu().contiguous()
    for name, opt in optimizers.items():
        _flatten_optimizer(name, opt, tensors, meta)
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"vqbench": json.dumps(meta)})
    os.replace(tmp, path)


def load_checkpoint(path: Path, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
                    device: torch.device) -> int:
    """Restore everything saved by `save_checkpoint`; returns the step to continue from."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["vqbench"])
    tensors = load_file(str(path), device=str(device))
    for name, module in modules.items():
        sub = {k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(name + ".")}
        module.load_state_dict(sub)
    for name, opt in optimizers.items():
        _unflatten_optimizer(name, opt, tensors, meta)
    torch.set_rng_state(tensors["rng.cpu"].cpu())
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"].cpu())
    return int(meta["step"])
