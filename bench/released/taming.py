"""`taming`: CompVis taming-transformers VQGANs (https://github.com/CompVis/taming-transformers).

Files: the Lightning checkpoint (`ckpts/last.ckpt` of a download; its `state_dict` holds encoder.*,
decoder.*, quant_conv.*, post_quant_conv.*, quantize.* and the training loss's loss.*) and its YAML
config (`configs/model.yaml`; found there automatically, or given with config_path).

- `taming.models.vqgan.VQModel` -> method `vqgan` with `legacy=True, beta=0.25` (taming's
  VectorQuantizer2 default: beta on the codebook term), `quantize.embedding.weight` as the codebook.
- `taming.models.vqgan.GumbelVQ` (`quantize.proj` 1x1 conv to K logits, `quantize.embed`) ->
  method `gumbel` with the config's kl_weight and temperature schedule (used in training only).
  taming samples Gumbel noise in eval mode too; vqbench takes the argmax of the logits, so the same
  image always gets the same codes (recorded as a note).
The loss.* keys (LPIPS and discriminator) are left out; any other key the mapping does not take is
refused by name.
"""
from __future__ import annotations

from typing import Any

import torch

import methods
from bench.core.errors import UserError
from bench.released.configs import architecture, find_config, read_model_params, require
from bench.released.keymap import From, first_of, place, renamed
from bench.released.layouts import TAMING, autoencoder_rule
from bench.released.registry import Adapted, Sources, register_adapter
from bench.released.weights import build_autoencoder, ignored_summary, load_placed, read_weights

IGNORED = {"loss.": "the training loss (LPIPS network and PatchGAN discriminator), not part of the tokenizer"}
GUMBEL_NOTE = ("eval codes are the argmax of the Gumbel logits; taming's GumbelQuantize samples Gumbel noise in eval "
               "mode as well, so its published numbers come from sampled codes")


@register_adapter("taming")
def adapt_taming(src: Sources) -> Adapted:
    """taming-transformers VQGAN (VQModel or GumbelVQ): Lightning .ckpt plus its YAML config."""
    config = find_config(src.path, src.config_path)
    target, params = read_model_params(config)
    arch = architecture(params, config)
    n_embed, embed_dim = require(params, "n_embed", config), require(params, "embed_dim", config)
    if params.get("remap") is not None:
        raise UserError(f"config {config}: model.params.remap is set; remapped code indices are not supported")
    tensors, weights_key, ckpt = read_weights(src.path, ("state_dict",))
    gumbel = (target or "").endswith("GumbelVQ") or "quantize.proj.weight" in tensors
    if gumbel:
        if arch["z_channels"] != embed_dim:
            # taming's GumbelVQ projects quant_conv's embed_dim channels with a conv built for z_channels
            raise UserError(f"config {config}: a GumbelVQ needs z_channels == embed_dim, got {arch['z_channels']} "
                            f"and {embed_dim}")
        method, options = "gumbel", methods.build_options("gumbel", **_gumbel_options(params))
        quantizer_rule = first_of(renamed({"quantizer.proj.bias": "quantize.proj.bias",
                                           "quantizer.embed.weight": "quantize.embed.weight"}),
                                  lambda k: From(("quantize.proj.weight",), squeeze_1x1=True)
                                  if k == "quantizer.proj.weight" else None)
        given = {"quantizer.step": torch.zeros((), dtype=torch.long)}  # the temperature schedule's step: training only
        notes = [GUMBEL_NOTE]
    else:
        method, options = "vqgan", methods.build_options("vqgan", beta=0.25, legacy=True)
        quantizer_rule = renamed({"quantizer.embedding.weight": "quantize.embedding.weight"})
        given, notes = {}, []
    quantizer = methods.instantiate(method, n_embed, embed_dim, options)
    model = build_autoencoder(quantizer, arch)
    rule = first_of(autoencoder_rule(TAMING, len(arch["ch_mult"])), quantizer_rule)
    placement = place(tensors, model, rule, src.path, ignore=IGNORED, given=given,
                      hint=f" (shapes from config {config})")
    return Adapted(load_placed(model, placement), method, n_embed, embed_dim, options, arch, arch["resolution"],
                   weights_key=weights_key, files={"checkpoint": src.path, "config": config},
                   ignored=ignored_summary(placement, IGNORED), stand_ins=ckpt.stand_ins, notes=notes,
                   extra={"target": target})


def _gumbel_options(params: dict[str, Any]) -> dict[str, Any]:
    """GumbelVQ's kl_weight and its LambdaWarmUpCosineScheduler (lr_start -> lr_min over
    max_decay_steps, used as the temperature) as vqbench's gumbel options; they matter for training only."""
    out: dict[str, Any] = {}
    if isinstance(params.get("kl_weight"), (int, float)):
        out["kl_weight"] = float(params["kl_weight"])
    sched = params.get("temperature_scheduler_config")
    sp = sched.get("params") if isinstance(sched, dict) else None
    if isinstance(sp, dict):
        for theirs, ours, cast in (("lr_start", "temp_start", float), ("lr_min", "temp_min", float),
                                   ("max_decay_steps", "anneal_steps", int)):
            if isinstance(sp.get(theirs), (int, float)):
                out[ours] = cast(sp[theirs])
    return out
