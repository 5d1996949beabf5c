"""`llamagen`: LlamaGen's VQ image tokenizers (https://github.com/FoundationVision/LlamaGen,
tokenizer/tokenizer_image/vq_model.py): vq_ds16_c2i.pt, vq_ds8_c2i.pt, vq_ds16_t2i.pt.

Files: the .pt alone. LlamaGen publishes no config file; its architecture (VQ-16: ch 128,
ch_mult 1,1,2,2,4; VQ-8: 1,2,2,4; 2 res blocks; z 256) is read off the tensor shapes.

LlamaGen's network is VQGAN's: the same ResnetBlock / AttnBlock / Downsample (asymmetric pad) /
Upsample, GroupNorm(32, eps 1e-6), one more res block per decoder level, attention after every res
block of the lowest-resolution level and in the middle. So it maps onto the shared autoencoder with
attention at that level's resolution; only the module names differ (bench/released/layouts.py).
What the shared autoencoder cannot express is refused: different encoder and decoder ch_mult (the
shared network has one), batch norm instead of group norm (its running statistics are keys no rule
takes).

Quantizer: `vqgan` with `l2_normalize=True` (LlamaGen's codebook_l2_norm, on in every released
tokenizer: latents and codes projected onto the unit sphere before the nearest-code search, the
normalised code as z_q) and the standard loss placement (legacy=False, beta 0.25, its
commit_loss_beta); codebook dim = embed dim = 8, K = 16384 by default. Its entropy loss (ratio 0 by
default) acts in training only. The weights are taken from `ema` when the file has it, else `model`,
else `state_dict`: the order of LlamaGen's own reconstruction script.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import methods
from bench.core.errors import UserError
from bench.released.keymap import first_of, place, renamed
from bench.released.layouts import LLAMAGEN, autoencoder_rule
from bench.released.registry import Adapted, Sources, register_adapter
from bench.released.safe_load import StandIn
from bench.released.weights import build_autoencoder, ignored_summary, load_placed, read_weights

WEIGHT_KEYS = ("ema", "model", "state_dict")
IGNORED = {"quantize.codebook_used": "training-time buffer of recently used codes (usage display only)"}
TRAINED_RESOLUTION = 256  # LlamaGen's --image-size default, when the file's args do not say


@register_adapter("llamagen")
def adapt_llamagen(src: Sources) -> Adapted:
    """LlamaGen VQ tokenizer (.pt with a `model` or `ema` entry; architecture read off the shapes)."""
    tensors, weights_key, ckpt = read_weights(src.path, WEIGHT_KEYS)
    resolution = _trained_resolution(ckpt.content)
    arch = infer_architecture(tensors, src.path, resolution)
    codebook = tensors.get("quantize.embedding.weight")
    if codebook is None or codebook.ndim != 2:
        raise UserError(f"checkpoint {src.path}: missing key 'quantize.embedding.weight' (the codebook)")
    codebook_size, embed_dim = (int(s) for s in codebook.shape)
    options = methods.build_options("vqgan", beta=0.25, legacy=False, l2_normalize=True)
    model = build_autoencoder(methods.instantiate("vqgan", codebook_size, embed_dim, options), arch)
    rule = first_of(autoencoder_rule(LLAMAGEN, len(arch["ch_mult"])),
                    renamed({"quantizer.embedding.weight": "quantize.embedding.weight"}))
    placement = place(tensors, model, rule, src.path, ignore=IGNORED, hint=" (architecture read off the file's shapes)")
    return Adapted(load_placed(model, placement), "vqgan", codebook_size, embed_dim, options, arch, resolution,
                   weights_key=weights_key, files={"checkpoint": src.path}, ignored=ignored_summary(placement, IGNORED),
                   stand_ins=ckpt.stand_ins)


def infer_architecture(tensors: dict[str, Any], path: Path, resolution: int) -> dict[str, Any]:
    """The shared autoencoder's arguments from LlamaGen's tensor names and shapes."""

    def need(key: str):
        if key not in tensors:
            raise UserError(f"checkpoint {path}: missing key {key!r}")
        return tensors[key]

    ch = int(need("encoder.conv_in.weight").shape[0])
    levels = _indices(tensors, r"encoder\.conv_blocks\.(\d+)\.res\.0\.conv1\.weight")
    if not levels or levels != list(range(len(levels))):
        raise UserError(f"checkpoint {path}: missing key 'encoder.conv_blocks.{len(levels)}.res.0.conv1.weight' "
                        f"(LlamaGen encoder levels found: {levels})")
    widths = [int(tensors[f"encoder.conv_blocks.{i}.res.0.conv1.weight"].shape[0]) for i in levels]
    if any(w % ch for w in widths):
        raise UserError(f"checkpoint {path}: encoder level widths {widths} are not multiples of conv_in's {ch}")
    ch_mult = tuple(w // ch for w in widths)
    n = len(ch_mult)
    for s in range(n):  # the decoder's stage s runs at level n-1-s
        key = f"decoder.conv_blocks.{s}.res.0.conv1.weight"
        width = int(need(key).shape[0])
        if width != ch * ch_mult[n - 1 - s]:
            raise UserError(f"checkpoint {path}: key {key!r} has {width} output channels where the encoder's ch_mult "
                            f"{ch_mult} gives {ch * ch_mult[n - 1 - s]}: LlamaGen's decoder_ch_mult differs from its "
                            f"encoder_ch_mult, and the shared autoencoder has one ch_mult for both (not supported)")
    blocks = _indices(tensors, r"encoder\.conv_blocks\.0\.res\.(\d+)\.conv1\.weight")
    attn_levels = _indices(tensors, r"encoder\.conv_blocks\.(\d+)\.attn\.0\.q\.weight")
    if resolution % 2 ** (n - 1):
        resolution = TRAINED_RESOLUTION
    return {"ch": ch, "ch_mult": ch_mult, "num_res_blocks": len(blocks),
            # attention by level, as resolutions: only which level has it matters, not the input size
            "attn_resolutions": tuple(resolution // 2 ** i for i in attn_levels), "resolution": resolution,
            "z_channels": int(need("encoder.conv_out.weight").shape[0]), "dropout": 0.0}


def _indices(tensors: dict[str, Any], pattern: str) -> list[int]:
    rx = re.compile(pattern + "$")
    return sorted({int(m.group(1)) for k in tensors if (m := rx.match(k))})


def _trained_resolution(content: Any) -> int:
    """--image-size from the file's `args` (an argparse.Namespace, read as a stand-in: its values are
    data, nothing of argparse runs), else LlamaGen's default."""
    args = content.get("args") if isinstance(content, dict) else None
    state = args.state if isinstance(args, StandIn) else None
    size = state.get("image_size") if isinstance(state, dict) else None
    return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else TRAINED_RESOLUTION
