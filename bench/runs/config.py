"""Run configuration: presets as plain dataclasses, one RunConfig per grid cell, and the resolved
config (everything that determines a run's result) whose hash is the run id."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from bench.core.errors import UserError


@dataclass(frozen=True)
class ModelPreset:
    resolution: int  # training and evaluation resolution (square)
    ch: int  # base channel count of the encoder/decoder
    ch_mult: tuple[int, ...]  # channel multiplier per level; len - 1 downsamplings, f = 2^(len-1)
    num_res_blocks: int
    attn_resolutions: tuple[int, ...]  # feature-map sizes that get self-attention after each block
    z_channels: int  # encoder output channels, before quant_conv
    embed_dim: int  # dimension of one code vector (VQCT quantizes 2*embed_dim channels)
    dropout: float = 0.0


@dataclass(frozen=True)
class TrainPreset:
    batch_size: int
    base_lr: float  # learning rate = base_lr * batch_size, as in taming-transformers / the VQCT configs
    steps: int
    disc_start: int  # step from which the PatchGAN term is on; >= steps means never
    disc_weight: float = 0.8  # VQGAN's adaptive weight is multiplied by this
    disc_layers: int = 3
    perceptual_weight: float = 1.0  # 0 switches the perceptual network off (recorded)
    codebook_weight: float = 1.0  # weight of the quantizer's own loss
    log_every: int = 50
    ckpt_every: int = 200
    eval_batch_size: int = 64
    # rFID, KID and LPIPS at evaluation. Off for `smoke`: at 16 px they mean little, and Inception
    # on the CPU would make a seconds-long pipeline check take minutes. Recorded as None.
    perceptual_metrics: bool = True
    num_workers: int = 0  # DataLoader workers; 0 for in-memory datasets


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    model: ModelPreset
    train: TrainPreset


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "cpu-tiny",
            "default: 32 px, f=4, small encoder/decoder; trains in about two minutes per method on 2 CPU cores",
            ModelPreset(resolution=32, ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(),
                        z_channels=32, embed_dim=32),
            TrainPreset(batch_size=32, base_lr=2.5e-5, steps=600, disc_start=10**9, perceptual_weight=0.0,
                        log_every=25, ckpt_every=200),
        ),
        Preset(
            "smoke",
            "seconds-long pipeline check: 16 px, f=2, tiny model, PatchGAN on from step 10, checkpoint every 5 steps",
            ModelPreset(resolution=16, ch=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,),
                        z_channels=16, embed_dim=16),
            TrainPreset(batch_size=8, base_lr=1e-4, steps=20, disc_start=10, disc_layers=2, perceptual_weight=0.0,
                        log_every=5, ckpt_every=5, eval_batch_size=64, perceptual_metrics=False),
        ),
        Preset(
            "paper",
            "VQCT's configuration: 256 px, f=16 (ch 128, mult 1,1,2,2,4, 2 res blocks, attention at 16), "
            "embed_dim 256, batch 8, base lr 4.5e-6, L1+LPIPS+hinge PatchGAN from step 10000",
            ModelPreset(resolution=256, ch=128, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2, attn_resolutions=(16,),
                        z_channels=256, embed_dim=256),
            TrainPreset(batch_size=8, base_lr=4.5e-6, steps=100_000, disc_start=10_000, disc_weight=0.8,
                        perceptual_weight=1.0, log_every=100, ckpt_every=2000, eval_batch_size=16, num_workers=4),
        ),
    ]
}


@dataclass
class RunConfig:
    """One cell of the grid. Everything else comes from the preset."""

    method: str
    dataset: str = "photos"
    codebook_size: int = 1024
    seed: int = 0
    preset: str = "cpu-tiny"
    steps: int | None = None  # None: the preset's
    method_options: dict[str, Any] = field(default_factory=dict)
    dataset_options: dict[str, Any] = field(default_factory=dict)  # change the images: part of the run id
    data_root: str | None = None
    # Where the data is and how it is read; none of these changes a finished run's images, so none is
    # part of the run id: per-dataset folders (--dataset-path NAME=PATH), the opt-in decoded cache,
    # and skipping unreadable files (counted in the record) instead of failing the run.
    dataset_paths: dict[str, str] = field(default_factory=dict)
    dataset_cache: bool = False
    skip_bad_images: bool = False
    device: str | None = None  # None: cuda when available, else cpu (not part of the run id)
    compile: bool = False  # torch.compile the encoder, decoder and discriminator (how, not what: not in the run id)


def preset(name: str) -> Preset:
    if name not in PRESETS:
        from methods.registry import unknown_name_message

        raise UserError(unknown_name_message("preset", name, sorted(PRESETS)))
    return PRESETS[name]


def resolve(cfg: RunConfig) -> dict[str, Any]:
    """Validate the config and expand it into the full dict stored in the record and hashed into the
    run id: every option of the method, every preset field. Fails before any work starts."""
    import datasets
    import methods

    if int(cfg.codebook_size) < 1:
        raise UserError(f"codebook size must be a positive integer, got {cfg.codebook_size}")
    if cfg.steps is not None and int(cfg.steps) < 1:
        raise UserError(f"steps must be a positive integer, got {cfg.steps}")
    if int(cfg.seed) < 0:
        raise UserError(f"seed must be a non-negative integer, got {cfg.seed}")
    p = preset(cfg.preset)
    dataset = datasets.canonical_name(cfg.dataset)  # aliases (adeg20k) are recorded as the canonical name
    datasets.check_options(dataset, cfg.dataset_options)
    datasets.locate(dataset, cfg.data_root, dataset_path(cfg))  # a missing folder fails before any work
    options = methods.build_options(cfg.method, **cfg.method_options)
    train = dataclasses.asdict(p.train)
    if cfg.steps is not None:
        train["steps"] = int(cfg.steps)
    return {
        "method": cfg.method,
        "dataset": dataset,
        "codebook_size": int(cfg.codebook_size),
        "seed": int(cfg.seed),
        "preset": p.name,
        "steps": train["steps"],
        "method_options": dataclasses.asdict(options),
        "dataset_options": dict(cfg.dataset_options),
        "model": dataclasses.asdict(p.model),
        "train": train,
    }


def dataset_path(cfg: RunConfig) -> str | None:
    """The --dataset-path given for this config's dataset (keys may be aliases)."""
    import datasets

    name = datasets.canonical_name(cfg.dataset)
    for key, path in cfg.dataset_paths.items():
        if datasets.canonical_name(key) == name:
            return path
    return None


def run_id(resolved: dict[str, Any]) -> str:
    """Readable prefix plus a stable hash of the resolved config: equal configs, equal ids."""
    blob = json.dumps(resolved, sort_keys=True, default=str).encode()
    digest = hashlib.sha256(blob).hexdigest()[:10]
    # the id names a folder: imagefolder:/data/x/pics -> imagefolder_x_pics
    base, _, path = resolved["dataset"].partition(":")
    dataset = re.sub(r"[^A-Za-z0-9._]+", "_", "_".join([base, *path.strip("/").split("/")[-2:]])).strip("_")[:48]
    return f"{resolved['method']}-{dataset}-K{resolved['codebook_size']}-s{resolved['seed']}-{digest}"
