"""Key layouts of released encoders/decoders, as rules onto the shared autoencoder's state dict.

The shared autoencoder (bench/models/autoencoder.py) is VQGAN's network: the same blocks, channels,
attention placement and padding as taming-transformers, under other module names. Taming names and
LlamaGen names differ from it (and from each other) only in spelling:

    vqbench                               taming                            LlamaGen
    encoder.stages.{i}.blocks.{j}         encoder.down.{i}.block.{j}        encoder.conv_blocks.{i}.res.{j}
    encoder.stages.{i}.attns.{j}          encoder.down.{i}.attn.{j}         encoder.conv_blocks.{i}.attn.{j}
    encoder.stages.{i}.down               encoder.down.{i}.downsample       encoder.conv_blocks.{i}.downsample
    decoder.stages.{s} (s = 0: lowest     decoder.up.{L-1-s} (indexed by    decoder.conv_blocks.{s} (the
      resolution, in order of use)          level)                            same order as vqbench)
    decoder.stages.{s}.up                 decoder.up.{L-1-s}.upsample       decoder.conv_blocks.{s}.upsample
    {encoder,decoder}.mid.0 / .1 / .2     mid.block_1 / attn_1 / block_2    mid.0 / .1 / .2
    ResBlock .skip                        .nin_shortcut                     .nin_shortcut
    AttnBlock .qkv (q, k, v stacked)      .q, .k, .v                        .q, .k, .v
    AttnBlock .proj                       .proj_out                         .proj_out

Everything else (conv_in, norm_out, conv_out, norm1/conv1/norm2/conv2, norm, quant_conv,
post_quant_conv) has the same name in all three.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from bench.released.keymap import From, Rule

_BLOCK = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2", "skip": "nin_shortcut"}
_ATTN_QKV = ("q", "k", "v")
_ATTN = {"norm": "norm", "proj": "proj_out"}


@dataclass(frozen=True)
class Layout:
    name: str
    enc_block: str  # format strings over i (level), j (block)
    enc_attn: str
    enc_down: str
    dec_block: str  # over s (vqbench stage), lvl (taming level = L-1-s), j
    dec_attn: str
    dec_up: str
    mid: tuple[str, str, str]  # over part (encoder | decoder)


TAMING = Layout("taming", "encoder.down.{i}.block.{j}", "encoder.down.{i}.attn.{j}", "encoder.down.{i}.downsample",
                "decoder.up.{lvl}.block.{j}", "decoder.up.{lvl}.attn.{j}", "decoder.up.{lvl}.upsample",
                ("{part}.mid.block_1", "{part}.mid.attn_1", "{part}.mid.block_2"))
LLAMAGEN = Layout("llamagen", "encoder.conv_blocks.{i}.res.{j}", "encoder.conv_blocks.{i}.attn.{j}",
                  "encoder.conv_blocks.{i}.downsample", "decoder.conv_blocks.{s}.res.{j}",
                  "decoder.conv_blocks.{s}.attn.{j}", "decoder.conv_blocks.{s}.upsample",
                  ("{part}.mid.0", "{part}.mid.1", "{part}.mid.2"))

_STAGE = re.compile(r"^(encoder|decoder)\.stages\.(\d+)\.(blocks|attns)\.(\d+)\.(\w+)\.(.+)$")
_RESAMPLE = re.compile(r"^(encoder|decoder)\.stages\.(\d+)\.(down|up)\.conv\.(.+)$")
_MID = re.compile(r"^(encoder|decoder)\.mid\.([012])\.(\w+)\.(.+)$")
_SAME = re.compile(r"^((encoder|decoder)\.(conv_in|norm_out|conv_out)|quant_conv|post_quant_conv)\.")


def autoencoder_rule(layout: Layout, levels: int) -> Rule:
    """The rule for every encoder/decoder/quant_conv key of a shared autoencoder with `levels`
    resolutions (len(ch_mult)), in `layout`'s names. Quantizer keys are left to the adapter."""

    def block(prefix: str, module: str, tail: str, attn: bool) -> From | None:
        if attn:
            if module == "qkv":
                return From(tuple(f"{prefix}.{p}.{tail}" for p in _ATTN_QKV))
            return From((f"{prefix}.{_ATTN[module]}.{tail}",)) if module in _ATTN else None
        return From((f"{prefix}.{_BLOCK[module]}.{tail}",)) if module in _BLOCK else None

    def rule(key: str) -> From | None:
        if _SAME.match(key):
            return From((key,))
        if m := _STAGE.match(key):
            part, s, kind, j, module, tail = m.groups()
            names = {"i": s, "s": s, "lvl": levels - 1 - int(s), "j": j}
            if part == "encoder":
                prefix = (layout.enc_attn if kind == "attns" else layout.enc_block).format(**names)
            else:
                prefix = (layout.dec_attn if kind == "attns" else layout.dec_block).format(**names)
            return block(prefix, module, tail, kind == "attns")
        if m := _RESAMPLE.match(key):
            part, s, _, tail = m.groups()
            names = {"i": s, "s": s, "lvl": levels - 1 - int(s)}
            prefix = (layout.enc_down if part == "encoder" else layout.dec_up).format(**names)
            return From((f"{prefix}.conv.{tail}",))
        if m := _MID.match(key):
            part, n, module, tail = m.groups()
            return block(layout.mid[int(n)].format(part=part), module, tail, n == "1")
        return None

    return rule
