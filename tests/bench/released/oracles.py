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
import importlib.util
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


# --- VQCT: the official code's model, restated from taming.zip (taming/models/vqct.py, vqct_VectorQuantizer3) ---


class OfficialVQCTQuantizer(nn.Module):
    """The official quantizer in eval mode: a 2-layer torch_geometric GCN over the prior's word vectors
    and its edge list as given (one entry per occurrence, and its reverse), adjective half = mean of
    the top-k nearest adjective codes, noun half = nearest noun code (indices local to each half).
    The word vectors and edges are plain attributes, not buffers, as there: the checkpoint lacks them."""

    def __init__(self, vectors: torch.Tensor, edge_entries: torch.Tensor, n_adj: int, e_dim: int, topk: int) -> None:
        super().__init__()
        from torch_geometric.nn import GCNConv

        self.e_dim, self.topk, self.adj_len = e_dim, topk, n_adj
        self.code_book_mapping = nn.Sequential(nn.Linear(vectors.shape[1], e_dim), nn.LeakyReLU(0.1),
                                               nn.Linear(e_dim, e_dim))  # built, never called
        self.gcn = nn.Module()
        self.gcn.conv1, self.gcn.conv2 = GCNConv(vectors.shape[1], e_dim), GCNConv(e_dim, e_dim)
        self.code, self.edges = vectors, edge_entries

    def codebook(self) -> torch.Tensor:
        h = torch.relu(self.gcn.conv1(self.code, self.edges))
        return self.gcn.conv2(torch.nn.functional.dropout(h, training=self.training), self.edges)

    def forward(self, z: torch.Tensor):
        w = self.codebook()
        halves, indices = [], []
        for part, codes in ((z[:, : self.e_dim], w[: self.adj_len]), (z[:, self.e_dim :], w[self.adj_len :])):
            rows = part.permute(0, 2, 3, 1).reshape(-1, self.e_dim)
            d = rows.pow(2).sum(1, keepdim=True) + codes.pow(2).sum(1) - 2 * rows @ codes.t()
            k = self.topk if not halves else 1  # the adjective half first
            idx = d.topk(k, dim=1, largest=False).indices
            q = codes[idx].mean(1).view(part.shape[0], part.shape[2], part.shape[3], -1).permute(0, 3, 1, 2)
            halves.append(q)
            indices.append(idx)
        return torch.cat(halves, 1), indices


class OfficialVQCT(nn.Module):
    """taming.models.vqct.VQModel's modules (quant_conv to 2*embed_dim) with taming's Encoder/Decoder."""

    def __init__(self, dd: dict, embed_dim: int, quantize: OfficialVQCTQuantizer) -> None:
        super().__init__()
        from taming.modules.diffusionmodules.model import Decoder, Encoder

        self.encoder, self.decoder = Encoder(**dd), Decoder(**dd)
        self.loss = TinyLoss()
        self.quantize = quantize
        self.quant_conv = nn.Conv2d(dd["z_channels"], 2 * embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(2 * embed_dim, dd["z_channels"], 1)

    def forward(self, x: torch.Tensor):
        q, indices = self.quantize(self.quant_conv(self.encoder(x)))
        return self.decoder(self.post_quant_conv(q)), indices


def vqct_prior(dim: int = 12, seed: int = 0) -> dict:
    """A prior file's content in the official layout (big_code_book_make_clip.py): counts, pairs and
    half-precision CLIP-like vectors (views of a batch, as `text_features[0].cpu()` gives). 'light' is
    tagged both ways; 'rare' and 'odd' are seen too few times; ('red', 'car') occurs three times; an
    ('light', 'light') occurrence becomes a self loop on the noun node."""
    g = torch.Generator().manual_seed(seed)
    adj_counts = {"red": 40, "rare": 3, "big": 25, "light": 15, "small": 12, "shiny": 11}
    noun_counts = {"car": 50, "dog": 30, "light": 20, "odd": 2, "tree": 14, "sky": 13}
    edges = [("red", "car")] * 3 + [("big", "dog"), ("light", "tree"), ("small", "car"), ("rare", "car"),
                                    ("shiny", "sky"), ("big", "tree"), ("light", "light"), ("red", "odd")]

    def vec() -> torch.Tensor:
        return torch.randn(1, dim, generator=g).half()[0]

    return {"adj_code_book": list(adj_counts), "noun_code_book": list(noun_counts),
            "adj_code_book_vec": {w: vec() for w in adj_counts}, "noun_code_book_vec": {w: vec() for w in noun_counts},
            "adj_code_book_num": adj_counts, "noun_code_book_num": noun_counts, "adj_noun_edges": edges}


def official_vqct_inputs(prior: dict) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(vectors, edge entries, n_adj) exactly as vqct_VectorQuantizer3.__init__ derives them."""
    adj = [w for w, c in prior["adj_code_book_num"].items() if c > 10]
    noun = [w for w, c in prior["noun_code_book_num"].items() if c > 10]
    index = {w: i for i, w in enumerate(adj + noun)}
    pairs = [(index[a], index[n]) for a, n in prior["adj_noun_edges"] if a in index and n in index]
    pairs = pairs + [(v, u) for u, v in pairs]
    vectors = torch.stack([prior["adj_code_book_vec"][w] for w in adj] + [prior["noun_code_book_vec"][w] for w in noun])
    return vectors.float(), torch.tensor(pairs).t().contiguous(), len(adj)


# --- LlamaGen: tokenizer/tokenizer_image/vq_model.py's module tree and forward, from taming's blocks ---
# LlamaGen's ResnetBlock, AttnBlock, Downsample and Upsample have taming's parameter names and maths
# (its ResnetBlock is taming's without the timestep input), so they are taken from taming here; the
# tree around them (conv_blocks / res / attn / downsample, attention at the lowest resolution only,
# mid as a ModuleList) and the l2-normalised quantizer follow LlamaGen's file.


def _llamagen_levels(ch: int, ch_mult, blocks: int, encoder: bool) -> nn.ModuleList:
    from taming.modules.diffusionmodules.model import AttnBlock, Downsample, ResnetBlock, Upsample

    levels = nn.ModuleList()
    n = len(ch_mult)
    order = range(n) if encoder else reversed(range(n))
    block_in = ch if encoder else ch * ch_mult[-1]
    for i in order:
        level = nn.Module()
        level.res, level.attn = nn.ModuleList(), nn.ModuleList()
        for _ in range(blocks + (0 if encoder else 1)):
            level.res.append(ResnetBlock(in_channels=block_in, out_channels=ch * ch_mult[i], dropout=0.0, temb_channels=0))
            block_in = ch * ch_mult[i]
            if i == n - 1:
                level.attn.append(AttnBlock(block_in))
        if encoder and i != n - 1:
            level.downsample = Downsample(block_in, True)
        if not encoder and i != 0:
            level.upsample = Upsample(block_in, True)
        levels.append(level)
    return levels


def _llamagen_half(ch: int, ch_mult, blocks: int, z: int, encoder: bool) -> nn.Module:
    from taming.modules.diffusionmodules.model import AttnBlock, Normalize, ResnetBlock

    half = nn.Module()
    mid_ch = ch * ch_mult[-1]
    half.conv_in = nn.Conv2d(3, ch, 3, padding=1) if encoder else nn.Conv2d(z, mid_ch, 3, padding=1)
    half.conv_blocks = _llamagen_levels(ch, ch_mult, blocks, encoder)
    half.mid = nn.ModuleList([ResnetBlock(in_channels=mid_ch, out_channels=mid_ch, dropout=0.0, temb_channels=0),
                              AttnBlock(mid_ch),
                              ResnetBlock(in_channels=mid_ch, out_channels=mid_ch, dropout=0.0, temb_channels=0)])
    out_ch = mid_ch if encoder else ch
    half.norm_out = Normalize(out_ch)
    half.conv_out = nn.Conv2d(out_ch, z if encoder else 3, 3, padding=1)
    return half


class LlamaGenVQ(nn.Module):
    def __init__(self, ch: int = 32, ch_mult=(1, 2), blocks: int = 1, z: int = 32, embed_dim: int = 8,
                 codebook_size: int = 64, decoder_ch_mult=None) -> None:
        super().__init__()
        self.encoder = _llamagen_half(ch, ch_mult, blocks, z, True)
        self.decoder = _llamagen_half(ch, decoder_ch_mult or ch_mult, blocks, z, False)
        self.quantize = nn.Module()
        self.quantize.embedding = nn.Embedding(codebook_size, embed_dim)
        self.quantize.register_buffer("codebook_used", torch.zeros(65536))
        self.quant_conv = nn.Conv2d(z, embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z, 1)

    @staticmethod
    def _run(half: nn.Module, h: torch.Tensor, encoder: bool) -> torch.Tensor:
        def mid(h):
            for m in half.mid:
                h = m(h, None) if hasattr(m, "conv1") else m(h)
            return h

        h = half.conv_in(h)
        if not encoder:
            h = mid(h)
        for level in half.conv_blocks:
            for j, res in enumerate(level.res):
                h = res(h, None)
                if len(level.attn):
                    h = level.attn[j](h)
            for name in ("downsample", "upsample"):
                if hasattr(level, name):
                    h = getattr(level, name)(h)
        if encoder:
            h = mid(h)
        h = half.norm_out(h)
        return half.conv_out(h * torch.sigmoid(h))

    def quantize_latent(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        zn = torch.nn.functional.normalize(z.permute(0, 2, 3, 1), dim=-1)
        codes = torch.nn.functional.normalize(self.quantize.embedding.weight, dim=-1)
        flat = zn.reshape(-1, zn.shape[-1])
        d = flat.pow(2).sum(1, keepdim=True) + codes.pow(2).sum(1) - 2 * flat @ codes.t()
        idx = d.argmin(1)
        return codes[idx].view(zn.shape).permute(0, 3, 1, 2), idx

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q, idx = self.quantize_latent(self.quant_conv(self._run(self.encoder, x, True)))
        return self._run(self.decoder, self.post_quant_conv(q), False), idx


def save_llamagen(path: Path, weights: dict[str, torch.Tensor], ema: dict[str, torch.Tensor] | None = None) -> Path:
    """A checkpoint as vq_train.py writes it: model, optimizer, discriminator, steps, argparse args."""
    import argparse

    ckpt: dict[str, Any] = {"model": weights, "optimizer": {"state": {}, "param_groups": []},
                            "discriminator": {"conv.weight": torch.zeros(2, 3, 1, 1)}, "optimizer_disc": {},
                            "steps": 10000, "args": argparse.Namespace(vq_model="VQ-16", image_size=256,
                                                                         codebook_size=64, codebook_embed_dim=8)}
    if ema is not None:
        ckpt["ema"] = ema
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return path
