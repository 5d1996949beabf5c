"""taming-style YAML configs (`model.target`, `model.params.ddconfig`, `embed_dim`, `n_embed`):
finding the one that belongs to a checkpoint, reading it as plain data, and turning its ddconfig
into the shared autoencoder's arguments, refusing settings the shared network does not have."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bench.core.errors import UserError

# The folder layout of taming's and VQCT's released (and trained) models: logs/<run>/checkpoints/last.ckpt
# beside logs/<run>/configs/<time>-project.yaml; the downloads ship ckpts/last.ckpt and configs/model.yaml.
_CONFIG_DIRS = ("configs", ".")


def find_config(checkpoint: Path, given: Path | None) -> Path:
    """`given`, or the model config in a configs/ folder beside or above the checkpoint's folder: its
    only YAML file, or, in a training run's folder, the newest <time>-project.yaml (main.py writes one
    per start, beside a <time>-lightning.yaml of trainer settings)."""
    if given is not None:
        if not Path(given).is_file():
            raise UserError(f"config {given} does not exist")
        return Path(given)
    candidates: list[Path] = []
    for base in (checkpoint.parent, checkpoint.parent.parent):
        for sub in _CONFIG_DIRS:
            folder = base / sub
            if folder.is_dir():
                candidates = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml")
                                    and not p.stem.endswith("-lightning"))
                if candidates:
                    break
        if candidates:
            break
    projects = [p for p in candidates if p.stem.endswith("-project")]
    if len(candidates) == 1 or (projects and len(projects) == len(candidates)):
        return candidates[-1]  # timestamped names: the last sorted is the newest
    where = f"found {len(candidates)} in {candidates[0].parent}" if candidates else "none found beside it"
    raise UserError(f"checkpoint {checkpoint} needs its YAML config (model.params.ddconfig, embed_dim, n_embed); "
                    f"{where}: give it with --config PATH")


def read_model_params(path: Path) -> tuple[str | None, dict[str, Any]]:
    """(model.target, model.params) of a taming-style config, read with yaml.safe_load (plain data only)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"config {path} cannot be read as YAML: {first}") from None
    model = data.get("model") if isinstance(data, dict) else None
    params = model.get("params") if isinstance(model, dict) else None
    if not isinstance(params, dict):
        raise UserError(f"config {path} has no model.params (a taming-style config has model.target and model.params)")
    return model.get("target"), params


def require(params: dict[str, Any], key: str, path: Path, kind: type = int) -> Any:
    value = params.get(key)
    if value is None:
        raise UserError(f"config {path}: model.params.{key} is missing")
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise UserError(f"config {path}: model.params.{key} must be an integer, got {value!r}")
    return value


def architecture(params: dict[str, Any], path: Path) -> dict[str, Any]:
    """The shared autoencoder's arguments from model.params.ddconfig, after checking that the ddconfig
    describes the network the shared autoencoder is (RGB in and out, one z, strided-conv resampling)."""
    dd = params.get("ddconfig")
    if not isinstance(dd, dict):
        raise UserError(f"config {path}: model.params.ddconfig is missing")
    for key in ("ch", "ch_mult", "num_res_blocks", "attn_resolutions", "resolution", "z_channels"):
        if key not in dd:
            raise UserError(f"config {path}: ddconfig.{key} is missing")
    unsupported = {
        "double_z": (dd.get("double_z", True), False, "a KL autoencoder's doubled z, not a VQ tokenizer"),
        "in_channels": (dd.get("in_channels", 3), 3, "RGB input"),
        "out_ch": (dd.get("out_ch", 3), 3, "RGB output"),
        "resamp_with_conv": (dd.get("resamp_with_conv", True), True, "strided-conv down- and upsampling"),
        "give_pre_end": (dd.get("give_pre_end", False), False, "a decoder that ends at the image"),
        "tanh_out": (dd.get("tanh_out", False), False, "a decoder without a final tanh"),
    }
    for key, (value, needed, why) in unsupported.items():
        if value != needed:
            raise UserError(f"config {path}: ddconfig.{key}={value!r} is not supported: the shared autoencoder has "
                            f"{why} ({key}={needed!r})")
    return {"ch": int(dd["ch"]), "ch_mult": tuple(int(m) for m in dd["ch_mult"]),
            "num_res_blocks": int(dd["num_res_blocks"]),
            "attn_resolutions": tuple(int(r) for r in dd["attn_resolutions"]), "resolution": int(dd["resolution"]),
            "z_channels": int(dd["z_channels"]), "dropout": float(dd.get("dropout", 0.0))}
