"""`vqct`: checkpoints of the official VQCT code (https://github.com/zhangbq-research/VQCT, its
taming fork in taming.zip: taming/models/vqct.py with quantizer vqct_VectorQuantizer3).

Files: the Lightning checkpoint, its YAML config (configs/*_vqct.yaml: ddconfig, embed_dim, topk;
n_embed is ignored by the official code, K is the prior's word count) and the official word prior
`codebook_priors/big_nlp_word_knowledge_clip.pkl`, which the checkpoint does not hold (see
vqct_prior.py). Keys: encoder.*, decoder.*, quant_conv.* (z -> 2*embed_dim), post_quant_conv.*, the
GCN `quantize.gcn.conv{1,2}.{lin.weight,bias}` (torch_geometric GCNConv), and two that are left
out: `quantize.code_book_mapping.*` (an MLP the official quantizer builds and never calls) and loss.*.

Method `vqct` (gcn transfer, the official loss, the config's topk, edge_weight="count") over the
official graph. Decoding differs from the official code on
purpose: indices are global (nouns offset by the number of adjectives) and `decode_indices` redoes
the top-k mean, so decoding the indices reproduces z_q; the official get_codebook_entry does
neither (recorded as a note).
"""
from __future__ import annotations

from pathlib import Path

import methods
from bench.core.errors import UserError
from bench.released.configs import architecture, find_config, read_model_params, require
from bench.released.keymap import first_of, place, renamed
from bench.released.layouts import TAMING, autoencoder_rule
from bench.released.registry import Adapted, Sources, register_adapter
from bench.released.vqct_prior import OfficialPrior, counted_edges, find_prior, read_prior
from bench.released.weights import build_autoencoder, ignored_summary, load_placed, read_weights
from methods.base import Quantizer
from methods.vqct import TransferNet, VQCTOptions, VQCTQuantizer, normalized_adjacency

IGNORED = {"loss.": "the training loss (LPIPS network and PatchGAN discriminator), not part of the tokenizer",
           "quantize.code_book_mapping.": "an MLP the official quantizer builds but never calls"}
GCN_KEYS = {f"quantizer.transfer.layer{i}.{p}": f"quantize.gcn.conv{i}.{p}" for i in (1, 2) for p in ("lin.weight", "bias")}
NOTES = [("indices are global (noun indices offset by the number of adjectives) and decoding redoes the top-k mean "
          "of the adjective codes; the official get_codebook_entry does neither"),
         ("codebook graph as the official code builds it: count-weighted adjective-noun edges, a word tagged both "
          "ways mapped to its noun node")]


class OfficialPriorVQCT(VQCTQuantizer):
    """vqbench's VQCT quantizer (forward, decode_indices, codebook: unchanged) over the official prior
    file's words and graph instead of a prior built by codebooks/ from a corpus."""

    def __init__(self, prior: OfficialPrior, dim: int, options: VQCTOptions) -> None:
        Quantizer.__init__(self)  # not VQCTQuantizer.__init__: that builds vqbench's own prior from a corpus
        k = len(prior.words)
        if not 1 <= options.top_k <= prior.n_adj:
            raise UserError(f"vqct: topk={options.top_k} needs that many adjective codes; the prior has {prior.n_adj}")
        self.options = options
        self.codebook_size, self.dim, self.latent_channels = k, dim, 2 * dim
        self.adj_range, self.noun_range = (0, prior.n_adj), (prior.n_adj, k)
        self.code_groups = {"adj": self.adj_range, "noun": self.noun_range}
        self.words = list(prior.words)
        edge_index, counts = counted_edges(prior.edge_entries)
        # the buffers VQCTQuantizer.__init__ registers, in its layout (unique pairs, counts as weights)
        self.register_buffer("lm_codes", prior.vectors.float().contiguous())
        self.register_buffer("edge_index", edge_index)
        self.register_buffer("edge_weight", counts)
        self.register_buffer("adjacency", normalized_adjacency(edge_index, k, counts), persistent=False)
        self.transfer = TransferNet("gcn", prior.vectors.shape[1], options.hidden_dim or dim, dim, options.dropout)


@register_adapter("vqct")
def adapt_vqct(src: Sources) -> Adapted:
    """Official VQCT checkpoint: Lightning .ckpt, its YAML config and the official word-prior pickle."""
    config = find_config(src.path, src.config_path)
    target, params = read_model_params(config)
    arch = architecture(params, config)
    embed_dim = require(params, "embed_dim", config)
    top_k = params.get("topk", 1)  # the official VQModel's default
    if isinstance(top_k, bool) or not isinstance(top_k, int):
        raise UserError(f"config {config}: model.params.topk must be an integer, got {top_k!r}")
    if params.get("remap") is not None:
        raise UserError(f"config {config}: model.params.remap is set; remapped code indices are not supported")
    tensors, weights_key, ckpt = read_weights(src.path, ("state_dict",))
    prior_path = find_prior(src.prior_path, [src.path, config])
    prior = read_prior(prior_path)
    options = methods.build_options("vqct", top_k=top_k, loss="official", beta=0.25, edge_weight="count",
                                    transfer="gcn", codes="lm", pos_split=True, encoder="clip",
                                    corpus=f"vqct-official-prior:{prior_path}")
    quantizer = OfficialPriorVQCT(prior, embed_dim, options)
    model = build_autoencoder(quantizer, arch)
    rule = first_of(autoencoder_rule(TAMING, len(arch["ch_mult"])), renamed(GCN_KEYS))
    given = {k: getattr(quantizer, k.split(".", 1)[1]) for k in
             ("quantizer.lm_codes", "quantizer.edge_index", "quantizer.edge_weight")}
    placement = place(tensors, model, rule, src.path, ignore=IGNORED, given=given,
                      hint=f" (shapes from config {config} and prior {Path(prior_path).name})")
    extra = {"target": target, "prior": {"n_adj": prior.n_adj, "n_noun": len(prior.words) - prior.n_adj,
                                         "edge_entries": int(prior.edge_entries.shape[1]),
                                         "vector_dim": int(prior.vectors.shape[1])}}
    return Adapted(load_placed(model, placement), "vqct", quantizer.codebook_size, embed_dim, options, arch,
                   arch["resolution"], weights_key=weights_key,
                   files={"checkpoint": src.path, "config": config, "prior": Path(prior_path)},
                   ignored=ignored_summary(placement, IGNORED), stand_ins=ckpt.stand_ins, notes=list(NOTES), extra=extra)
