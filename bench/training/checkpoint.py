"""Training checkpoints in one safetensors file: module weights, optimizer state, RNG state and step.

Everything lives in one file written to a temp name and `os.replace`d, so a kill mid-write leaves the
previous checkpoint intact. Non-tensor state (step, optimizer hyperparameters) goes into the
file's string metadata as JSON.

A checkpoint is read into CPU memory and each tensor is placed by its owner: modules copy weights onto
their parameters' device, and torch's `Optimizer.load_state_dict` moves moment estimates to their
parameter's device but leaves Adam's `step` where it is (on the CPU, unless the optimizer is fused or
capturable). A `step` on the GPU would make every later optimizer step read it back (a device
synchronisation per parameter tensor). CUDA is touched only when the run's own tensors are on a CUDA
device: a CPU run on a GPU machine opens no CUDA context.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from bench.core.atomic import atomic_path


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read or does not fit the run's modules (cut short, zero
    bytes, written by other code). Raised before any module or optimizer is changed."""


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
    cuda = _cuda_device(modules)
    if cuda is not None:
        tensors["rng.cuda"] = torch.cuda.get_rng_state(cuda)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"vqbench": json.dumps(meta)})


def load_checkpoint(path: Path, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
                    device: torch.device) -> int:
    """Restore everything saved by `save_checkpoint`; returns the step to continue from. The whole file
    is read (into CPU memory) and checked against the modules' keys and shapes before anything is
    restored, so a CheckpointError leaves modules and optimizers as they were. `device` is the run's:
    only a CUDA one gets the saved CUDA RNG state."""
    tensors, meta = _read(path)
    for name, module in modules.items():
        expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        found = {k[len(name) + 1 :]: tuple(v.shape) for k, v in tensors.items() if k.startswith(name + ".")}
        if found != expected:
            odd = sorted(set(found) ^ set(expected)) or sorted(k for k in found if found[k] != expected[k])
            raise CheckpointError(f"checkpoint {path} does not fit this run's {name!r} (keys or shapes differ: "
                                  f"{', '.join(odd[:3])})")
    for name, module in modules.items():
        sub = {k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(name + ".")}
        module.load_state_dict(sub)
    for name, opt in optimizers.items():
        _unflatten_optimizer(name, opt, tensors, meta)
    torch.set_rng_state(tensors["rng.cpu"].cpu())
    if "rng.cuda" in tensors and torch.device(device).type == "cuda":
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)
    return int(meta["step"])


def _cuda_device(modules: dict[str, nn.Module]) -> torch.device | None:
    """The CUDA device the modules live on, or None for a run that does not use CUDA."""
    for module in modules.values():
        for tensor in (*module.parameters(), *module.buffers()):
            if tensor.is_cuda:
                return tensor.device
    return None


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["vqbench"])
        tensors = load_file(str(path), device="cpu")
        int(meta["step"])
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as exc:
        size = path.stat().st_size if path.exists() else 0
        raise CheckpointError(f"checkpoint {path} ({size} bytes) cannot be read: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}") from None
    if "rng.cpu" not in tensors:
        raise CheckpointError(f"checkpoint {path} has no RNG state (not written by vqbench)")
    return tensors, meta
