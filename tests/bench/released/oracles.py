"""Reference models for the released-checkpoint tests, and files in the released layouts.

taming's own VQModel and GumbelVQ come from `taming-transformers-rom1504`. Its module
taming.models.vqgan imports pytorch_lightning (only as the base class LightningModule) and
taming.main (only for instantiate_from_config), neither of which this environment has; both are put
in sys.modules for that one import and taken out right after (a stand-in left there breaks
matplotlib and Ray, which look modules up by name).
"""
from __future__ import annotations

import contextlib
import importlib
import sys
import types
from pathlib import Path
from typing import Any, Iterator

import torch
import yaml
from torch import nn


def instantiate(config: dict[str, Any]) -> Any:
    """taming.main.instantiate_from_config's behaviour: import `target`, call it with `params`."""
    module, name = config["target"].rsplit(".", 1)
    return getattr(importlib.import_module(module), name)(**config.get("params", {}))


def taming_vqgan() -> types.ModuleType:
    """taming.models.vqgan, imported with its two training-only imports stood in for the import only."""
    if "taming.models.vqgan" in sys.modules:
        return sys.modules["taming.models.vqgan"]
    stand_ins: dict[str, types.ModuleType] = {}
    if importlib.util.find_spec("pytorch_lightning") is None:
        pl = types.ModuleType("pytorch_lightning")
        pl.LightningModule = nn.Module
        stand_ins["pytorch_lightning"] = pl
    main = types.ModuleType("taming.main")
    main.instantiate_from_config = instantiate
    stand_ins["taming.main"] = main
    added = [n for n in stand_ins if n not in sys.modules]
    sys.modules.update({n: stand_ins[n] for n in added})
    try:
        return importlib.import_module("taming.models.vqgan")
    finally:
        for n in added:
            sys.modules.pop(n, None)


class TinyLoss(nn.Module):
    """Stands where taming's VQLPIPSWithDiscriminator is, with real taming weights under loss.*
    (LPIPS would need a download)."""

    def __init__(self) -> None:
        super().__init__()
        from taming.modules.discriminator.model import NLayerDiscriminator

        self.discriminator = NLayerDiscriminator(input_nc=3, ndf=8, n_layers=1)


def ddconfig(ch: int = 32, ch_mult=(1, 2), resolution: int = 16, attn=(8,), z: int = 32, blocks: int = 1) -> dict:
    return {"double_z": False, "z_channels": z, "resolution": resolution, "in_channels": 3, "out_ch": 3, "ch": ch,
            "ch_mult": list(ch_mult), "num_res_blocks": blocks, "attn_resolutions": list(attn), "dropout": 0.0}


LOSS_CONFIG = {"target": "tests.bench.released.oracles.TinyLoss"}


def taming_config(dd: dict, n_embed: int, embed_dim: int, gumbel: bool = False) -> dict:
    params: dict[str, Any] = {"embed_dim": embed_dim, "n_embed": n_embed, "ddconfig": dd, "lossconfig": LOSS_CONFIG}
    if gumbel:
        params["kl_weight"] = 1e-8
        params["temperature_scheduler_config"] = {
            "target": "taming.lr_scheduler.LambdaWarmUpCosineScheduler",
            "params": {"warm_up_steps": 0, "max_decay_steps": 1000001, "lr_start": 0.9, "lr_max": 0.9, "lr_min": 1e-6}}
    target = "taming.models.vqgan.GumbelVQ" if gumbel else "taming.models.vqgan.VQModel"
    return {"model": {"base_learning_rate": 4.5e-6, "target": target, "params": params}}


def build_taming(config: dict, seed: int = 0) -> nn.Module:
    """taming's own model of a config, with random weights (the codebook spread out so codes differ)."""
    vqgan = taming_vqgan()
    torch.manual_seed(seed)
    cls = vqgan.GumbelVQ if config["model"]["target"].endswith("GumbelVQ") else vqgan.VQModel
    model = cls(**config["model"]["params"])
    with torch.no_grad():
        if hasattr(model.quantize, "embedding"):
            model.quantize.embedding.weight.normal_()
    return model.eval()


@contextlib.contextmanager
def named_class(module: str, name: str) -> Iterator[type]:
    """A class that pickles as `module.name` (e.g. Lightning's ModelCheckpoint), for writing files in a
    framework's layout without the framework; its modules are in sys.modules only inside the block."""
    cls = type(name, (), {"__module__": module, "__qualname__": name})
    parts = module.split(".")
    added = []
    for i in range(1, len(parts) + 1):
        n = ".".join(parts[:i])
        if n not in sys.modules:
            sys.modules[n] = types.ModuleType(n)
            added.append(n)
    setattr(sys.modules[module], name, cls)
    try:
        yield cls
    finally:
        for n in added:
            sys.modules.pop(n, None)


def save_lightning(path: Path, state_dict: dict[str, torch.Tensor]) -> Path:
    """A checkpoint in PyTorch Lightning 1.x's layout, as taming's main.py writes it: the weights under
    state_dict beside the loop counters, the ModelCheckpoint callback's state keyed by its class (a
    numpy scalar in it), and optimizer states."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    with named_class("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint") as checkpoint_cls:
        torch.save({"epoch": 3, "global_step": 1200, "pytorch-lightning_version": "1.0.8",
                    "callbacks": {checkpoint_cls: {"monitor": "val/rec_loss", "best_model_score": torch.tensor(0.12),
                                                   "best_model_path": "logs/x/checkpoints/last.ckpt",
                                                   "current_score": np.float64(0.12)}},
                    "optimizer_states": [{"state": {}, "param_groups": [{"lr": 4.5e-6, "betas": (0.5, 0.9),
                                                                          "params": [0, 1]}]}],
                    "lr_schedulers": [], "state_dict": state_dict}, path)
    return path


def write_yaml(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def images(n: int = 2, resolution: int = 16, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, resolution, resolution, generator=g) * 2 - 1
