"""Presets: the model and training recipe of a run, as plain frozen dataclasses. A run takes one
preset; `--steps` is the only field the command line overrides. Without `--preset`, a machine with
a CUDA GPU gets `gpu-tiny` and a CPU-only machine `cpu-tiny` (`default_preset`)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from bench.core.errors import UserError
from bench.core.registry import unknown_name_message


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
    batch_size: int  # images per optimizer step, over every device and accumulation step (the global batch)
    base_lr: float  # learning rate = base_lr * batch_size, as in taming-transformers / the VQCT configs
    steps: int  # 0 where `epochs` sets the length (converted at resolve time)
    disc_start: int  # step from which the PatchGAN term is on (see disc_start_counts); >= steps means never
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
    # Images per forward pass on one device; None: the whole batch. A batch larger than this is
    # reached by gradient accumulation (and by data-parallel workers), so the official recipe's
    # global batch of 16 runs as 2 x 8 on one GPU. Part of the result (the discriminator's batch
    # norm and the adaptive GAN weight see one micro-batch at a time), hence part of the preset.
    micro_batch: int | None = None
    # --- how the official VQCT run trained (bench/runs/official_vqct.py, docs/vqct.md); added after
    # records existed, so a record holds them only where they differ from these defaults (ADDED_FIELDS) ---
    # auto: bf16 autocast on CUDA, fp32 elsewhere; fp32: no autocast on any device (the official use_amp=False).
    precision: str = "auto"
    # What disc_start counts. batches: the GAN is on from batch disc_start. optimizer_steps: Lightning
    # >= 1.6's global_step, which counts both optimizers' steps (two per batch): the generator's GAN term is
    # on from batch ceil(disc_start / 2), the discriminator's loss from batch ceil((disc_start - 1) / 2).
    disc_start_counts: str = "batches"
    # What the discriminator is trained on. generator_pass: the reconstructions of the generator's
    # forward pass, made before the autoencoder's update. after_update: recomputed after that update,
    # as Lightning's training_step runs the model again for the second optimizer.
    disc_inputs: str = "generator_pass"
    # Whether the discriminator's Adam steps on zero gradients before its loss is on (Lightning steps
    # every optimizer every batch and taming multiplies the loss by 0), so its step count, hence its bias
    # correction, runs from batch 0.
    disc_steps_before_start: bool = False
    # Training length in epochs of the training split; None: `steps` is the length. Converted at resolve
    # time (steps_per_epoch from the split's size, as the official loop counted batches); then `steps` is
    # epochs x steps_per_epoch, or --steps when given (both kept, so a record shows the override).
    epochs: int | None = None
    steps_per_epoch: int | None = None

    def __post_init__(self) -> None:
        for name, allowed in (("precision", PRECISIONS), ("disc_start_counts", DISC_START_COUNTS),
                              ("disc_inputs", DISC_INPUTS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"TrainPreset.{name} must be one of {allowed}, got {getattr(self, name)!r}")


PRECISIONS = ("auto", "fp32")
DISC_START_COUNTS = ("batches", "optimizer_steps")  # bench/training/gan_schedule.py
DISC_INPUTS = ("generator_pass", "after_update")  # bench/training/disc_inputs.py
# TrainPreset fields a record carries only where they differ from their defaults: without them a run's
# config is the one it had before they existed, so its run id (a hash of it) stays the same.
ADDED_FIELDS = ("precision", "disc_start_counts", "disc_inputs", "disc_steps_before_start", "epochs",
                "steps_per_epoch")


def recorded_train(train: TrainPreset) -> dict:
    """The `train` of a record: every field, less the ADDED_FIELDS at their defaults."""
    out = dataclasses.asdict(train)
    for f in dataclasses.fields(TrainPreset):
        if f.name in ADDED_FIELDS and out[f.name] == f.default:
            del out[f.name]
    return out


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    model: ModelPreset
    train: TrainPreset
    # Seeds a grid gets without --seeds. Not part of a run's config (a run has one seed). One where
    # time is short (the CPU); three where a default benchmark can afford the paired test across
    # seeds that a verdict between methods needs (docs/results.md).
    default_seeds: tuple[int, ...] = (0,)
    # K of a grid without --codebook-sizes; "full": a method's whole vocabulary (under vqct-official, the
    # official prior's vocabulary size for every method: bench/runs/official_vqct.py).
    codebook_sizes: tuple[int | str, ...] = (256,)
    # Runs take VQCT's official prior (union caption corpus + CLIP ViT-B/32 from the folders given as
    # --vqct-captions and --vqct-clip) and each dataset's `vqct` preprocessing recipe where it has one.
    official_vqct: bool = False


# VQCT's configs (configs/{ade20k,coco,cub}_vqct.yaml): shared by `paper` and `vqct-official`.
VQCT_MODEL = ModelPreset(resolution=256, ch=128, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2, attn_resolutions=(16,),
                         z_channels=256, embed_dim=256)

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "cpu-tiny",
            "default: 32 px, f=4, small encoder/decoder, 600 steps; about 13 minutes a run with its evaluation on "
            "2 CPU cores (two runs side by side, one thread each; measured in README)",
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
            "gpu-tiny",
            "default on a CUDA machine: the embedded photos at 32 px (the size their 2,142 training tiles "
            "support; at 128 px there are 231), f=4, a wider encoder/decoder than cpu-tiny, 3000 steps of batch 64, "
            "seeds 0,1,2 so that the conclusion can resolve a difference; minutes per run (not yet timed on a GPU)",
            ModelPreset(resolution=32, ch=64, ch_mult=(1, 2, 2), num_res_blocks=2, attn_resolutions=(),
                        z_channels=64, embed_dim=32),
            TrainPreset(batch_size=64, base_lr=1.25e-5, steps=3000, disc_start=10**9, perceptual_weight=0.0,
                        log_every=100, ckpt_every=500),
            default_seeds=(0, 1, 2),
        ),
        Preset(
            "gpu",
            "one modern GPU, about an hour per run (not yet timed on a GPU): 128 px, f=8 (16x16 tokens, "
            "the paper's token count), the paper's widths (ch 128, 2 res blocks, attention at 16), "
            "batch 16, L1+LPIPS+hinge PatchGAN from step 5000, 20000 steps",
            ModelPreset(resolution=128, ch=128, ch_mult=(1, 1, 2, 4), num_res_blocks=2, attn_resolutions=(16,),
                        z_channels=256, embed_dim=256),
            TrainPreset(batch_size=16, base_lr=4.5e-6, steps=20_000, disc_start=5_000, disc_weight=0.8,
                        perceptual_weight=1.0, log_every=100, ckpt_every=1000, eval_batch_size=64, num_workers=8),
        ),
        Preset(
            "paper",
            "the VQGAN recipe of VQCT's configs for every method: 256 px, f=16 (ch 128, mult 1,1,2,2,4, 2 res "
            "blocks, attention at 16), embed_dim 256, global batch 16 (8 per forward: 2 GPUs, or 2 accumulation "
            "steps on one), lr 7.2e-5, L1+LPIPS+hinge PatchGAN from batch 10000; not the authors' run "
            "(vqct-official is)",
            VQCT_MODEL,
            TrainPreset(batch_size=16, micro_batch=8, base_lr=4.5e-6, steps=100_000, disc_start=10_000,
                        disc_weight=0.8, perceptual_weight=1.0, log_every=100, ckpt_every=2000, eval_batch_size=16,
                        num_workers=4),
        ),
        Preset(
            "vqct-official",
            "VQCT as its authors ran it: paper's model, K = the official prior's whole vocabulary (CUB + Flowers + "
            "COCO captions, CLIP ViT-B/32: --vqct-captions, --vqct-clip), fp32, GAN from Lightning 1.6's "
            "global_step 10000 (batch 5000), discriminator on post-update reconstructions, 500 epochs, the "
            "configs' preprocessing; other methods run the same recipe",
            VQCT_MODEL,
            TrainPreset(batch_size=16, micro_batch=8, base_lr=4.5e-6, steps=0, disc_start=10_000, disc_weight=0.8,
                        perceptual_weight=1.0, log_every=100, ckpt_every=2000, eval_batch_size=16, num_workers=4,
                        precision="fp32", disc_start_counts="optimizer_steps", disc_inputs="after_update",
                        disc_steps_before_start=True, epochs=500),
            codebook_sizes=("full",),
            official_vqct=True,
        ),
    ]
}


def preset(name: str) -> Preset:
    if name not in PRESETS:
        raise UserError(unknown_name_message("preset", name, sorted(PRESETS)))
    return PRESETS[name]


# The default on a GPU machine is a benchmark of minutes that still decides something (three seeds of
# the embedded data at the resolution it has), not `gpu`: 20,000 steps per run on the embedded set's
# 231 tiles at 128 px would take hours and rank nothing. `gpu` and `paper` are for real datasets.
CUDA_DEFAULT, CPU_DEFAULT = "gpu-tiny", "cpu-tiny"


def default_preset() -> str:
    """`gpu-tiny` where torch sees a CUDA GPU, else `cpu-tiny`: what a run without `--preset` gets."""
    import torch

    return CUDA_DEFAULT if torch.cuda.is_available() else CPU_DEFAULT


def why_default(name: str) -> str:
    """Why a run without `--preset` got `name` (printed before a grid starts and recorded)."""
    machine = "a CUDA" if name == CUDA_DEFAULT else "a CPU-only"
    return f"default for {machine} machine (--preset to choose)"


def choose(given: str | None) -> tuple[str, str]:
    """The preset a run gets and why: (`given`, "given") after checking the name, or this machine's
    default and the reason for it."""
    if given is not None:
        return preset(given).name, "given"
    name = default_preset()
    return name, why_default(name)
