"""The prior's configuration as plain frozen dataclasses, and its presets.

A prior preset has the name of the tokenizer preset it goes with (`cpu-tiny`, `smoke`, `gpu`,
`paper`). The reference for the large ones is taming-transformers' GPT prior:
- `paper`: taming's `configs/faceshq_transformer.yaml` and `configs/drin_transformer.yaml` (the
  released transformer configs for 16x16 grids of a K=1024 VQGAN): 24 layers, 16 heads, width 1024;
  embedding, attention and residual dropout 0.1 (minGPT's `GPTConfig` defaults in
  `taming/modules/transformer/mingpt.py`, which those configs keep); AdamW with betas (0.9, 0.95)
  and weight decay 0.01 on linear weights only (`Net2NetTransformer.configure_optimizers` in
  `taming/models/cond_transformer.py`); learning rate = 4.5e-6 x batch (`base_learning_rate` and
  main.py's scaling); sampling with top-k 250, top-p 1.0, temperature 1.0 and 50,000 samples (the
  README's FFHQ / CelebA-HQ commands). taming publishes no batch size or step count for these
  priors: batch 32 and 200,000 steps are ours.
- `gpu`: minGPT's GPT-1 size from the same mingpt.py (12 layers, 12 heads, width 768), 50,000 steps,
  10,000 samples: about a GPU-day less than `paper`.
- Classifier-free guidance is not in taming; its label dropout (0.1) and guidance as
  logits_u + s (logits_c - logits_u) follow LlamaGen (`class_dropout_prob` in
  autoregressive/models/gpt.py). `cfg_scale` 1 switches guidance off.
`cpu-tiny` and `smoke` are sized for 2 CPU cores (about two minutes and a few seconds of training);
`smoke` scores only a few dozen images through Inception, so it stays a quick pipeline check.

Override single fields with `config.override({"train.steps": 500, "eval.n_samples": 100})`: names
and types are checked, so a misspelt field is an error.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from bench.core.errors import UserError
from bench.core.options import coerce_options
from bench.core.registry import suggest, unknown_name_message


@dataclass(frozen=True)
class TransformerConfig:
    n_layer: int
    n_head: int
    n_embd: int
    dropout: float = 0.0  # on embeddings, attention weights and residual branches (taming: 0.1 each)


@dataclass(frozen=True)
class PriorTrainConfig:
    batch_size: int  # token grids per optimizer step
    base_lr: float  # learning rate = base_lr * batch_size (taming's scaling, as the tokenizer presets)
    steps: int
    weight_decay: float = 0.01  # on Linear weights only; biases, norms and embeddings have none (taming)
    beta1: float = 0.9
    beta2: float = 0.95
    warmup_steps: int = 0  # linear warm-up from 0; constant afterwards (taming has neither schedule nor warm-up)
    grad_clip: float = 1.0  # max global gradient norm; 0 switches clipping off
    class_dropout: float = 0.1  # labels replaced by the null class during training, for guidance (LlamaGen)
    log_every: int = 50
    ckpt_every: int = 500


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 1.0
    top_k: int = 0  # keep the k most likely tokens; 0 keeps all
    top_p: float = 1.0  # keep the smallest set of tokens whose probability reaches p; 1 keeps all
    cfg_scale: float = 1.0  # classifier-free guidance for class-conditional priors; 1 is none
    batch_size: int = 64  # grids sampled together; each batch has its own seed (resumable by batch)


@dataclass(frozen=True)
class GenerationEvalConfig:
    n_samples: int  # generated images scored (50,000 at paper scale)
    # Training images for the reference statistics, a seeded subset when the split is larger (all of
    # them are held in memory at once by the reference cache); 0 takes the whole split.
    reference_images: int = 0
    # Inception features, and with them gFID, KID, IS, precision and recall; off: recorded as None,
    # with the reason.
    inception_metrics: bool = True
    precision_recall_k: int = 3  # k-th nearest neighbour radius (Kynkaanniemi et al. 2019)
    # Also score uniformly random tokens and decoded training tokens the same way: what gFID reads at
    # the bottom (no prior) and at the top (a prior that reproduced the training grids). 2 x n_samples
    # more images through Inception.
    baselines: bool = False
    grid_images: int = 64  # samples in the grid PNG
    # When the tokenizer's record has no rFID (its preset computes no Inception features, as `smoke`),
    # measure one on this many seeded held-out images (0: never; else at least 3, for its interval),
    # so gFID has an rFID beside it (bench.generation.tokenizer_rfid).
    tokenizer_rfid_images: int = 0


@dataclass(frozen=True)
class PriorConfig:
    preset: str
    model: TransformerConfig
    train: PriorTrainConfig
    sampling: SamplingConfig
    eval: GenerationEvalConfig
    seed: int = 0  # the prior's own seed (initialisation, batches, dropout, sampling)
    class_conditional: bool | None = None  # None: conditional when the training split has labels
    overrides: dict[str, Any] = field(default_factory=dict, compare=False)  # what override() changed, for the record

    @property
    def lr(self) -> float:
        return self.train.base_lr * self.train.batch_size

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; hashed into the prior id (the overrides are already in the values)."""
        out = dataclasses.asdict(self)
        out.pop("overrides")
        return out

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:10]

    def override(self, changes: dict[str, Any]) -> PriorConfig:
        """A copy with `section.field` (or top-level `seed`, `class_conditional`) values changed."""
        sections = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                    if dataclasses.is_dataclass(getattr(self, f.name))}
        top = {"seed", "class_conditional"}
        new: dict[str, Any] = {}
        by_section: dict[str, dict[str, Any]] = {}
        for key, value in changes.items():
            section, _, name = key.rpartition(".")
            if not section and name in top:
                new.update(coerce_options("prior", PriorConfig, {name: value}))
                continue
            if section not in sections:
                keys = sorted(top) + [f"{s}.{f.name}" for s, obj in sections.items() for f in dataclasses.fields(obj)]
                raise UserError(unknown_name_message("prior option", key, keys))
            cls = type(sections[section])
            names = [f.name for f in dataclasses.fields(cls)]
            if name not in names:
                raise UserError(f"prior option {key!r} does not exist" + suggest(name, names)
                                + f"; {section} has: {', '.join(names)}")
            by_section.setdefault(section, {}).update(coerce_options(f"prior {section}", cls, {name: value}))
        for section, values in by_section.items():
            new[section] = dataclasses.replace(sections[section], **values)
        out = dataclasses.replace(self, **new, overrides={**self.overrides, **changes})
        out.check()
        return out

    def check(self) -> None:
        """One-line UserErrors for values no prior can run with, before any work starts."""
        m, t, s, e = self.model, self.train, self.sampling, self.eval
        positive = {"model.n_layer": m.n_layer, "model.n_head": m.n_head, "model.n_embd": m.n_embd,
                    "train.batch_size": t.batch_size, "train.steps": t.steps, "train.log_every": t.log_every,
                    "train.ckpt_every": t.ckpt_every, "sampling.batch_size": s.batch_size,
                    "eval.n_samples": e.n_samples, "eval.precision_recall_k": e.precision_recall_k}
        for key, value in positive.items():
            if value < 1:
                raise UserError(f"prior option {key} must be a positive integer, got {value}")
        if m.n_embd % m.n_head:
            raise UserError(f"prior option model.n_embd ({m.n_embd}) must be divisible by model.n_head ({m.n_head})")
        checks = [("model.dropout", 0 <= m.dropout < 1, m.dropout), ("train.class_dropout", 0 <= t.class_dropout < 1,
                  t.class_dropout), ("train.base_lr", t.base_lr > 0, t.base_lr),
                  ("sampling.temperature", s.temperature > 0, s.temperature), ("sampling.top_k", s.top_k >= 0, s.top_k),
                  ("sampling.top_p", 0 < s.top_p <= 1, s.top_p), ("sampling.cfg_scale", s.cfg_scale >= 0, s.cfg_scale),
                  ("eval.reference_images", e.reference_images >= 0, e.reference_images),
                  ("eval.grid_images", e.grid_images >= 0, e.grid_images),
                  ("eval.tokenizer_rfid_images", e.tokenizer_rfid_images == 0 or e.tokenizer_rfid_images >= 3,
                   e.tokenizer_rfid_images),
                  ("seed", self.seed >= 0, self.seed)]
        for key, ok, value in checks:
            if not ok:
                raise UserError(f"prior option {key} is out of range: {value!r}")


def _preset(name: str, model: TransformerConfig, train: PriorTrainConfig, sampling: SamplingConfig,
            eval: GenerationEvalConfig) -> PriorConfig:
    return PriorConfig(name, model, train, sampling, eval)


PRIOR_PRESETS: dict[str, PriorConfig] = {
    p.preset: p
    for p in [
        _preset("cpu-tiny", TransformerConfig(n_layer=2, n_head=4, n_embd=64),
                PriorTrainConfig(batch_size=32, base_lr=3.125e-5, steps=1000, warmup_steps=100, log_every=50,
                                 ckpt_every=250),
                SamplingConfig(batch_size=250),
                GenerationEvalConfig(n_samples=1000)),
        _preset("smoke", TransformerConfig(n_layer=1, n_head=2, n_embd=32),
                PriorTrainConfig(batch_size=8, base_lr=1.25e-4, steps=20, log_every=5, ckpt_every=10),
                SamplingConfig(batch_size=16),
                # Inception on, on capped counts: gFID of 16 samples against 32 training images, and the
                # tokenizer's rFID on 16 held-out images (the smoke tokenizer computes none), so the
                # pipeline check shows gFID beside rFID; small-sample numbers (daggered), nothing to read.
                GenerationEvalConfig(n_samples=16, reference_images=32, tokenizer_rfid_images=16, grid_images=16)),
        # The prior of the gpu-tiny tokenizers (the default on a CUDA machine): cpu-tiny's recipe with
        # a larger transformer, more steps and twice the samples, still minutes on one GPU.
        _preset("gpu-tiny", TransformerConfig(n_layer=4, n_head=4, n_embd=128),
                PriorTrainConfig(batch_size=64, base_lr=1.5625e-5, steps=3000, warmup_steps=100, log_every=100,
                                 ckpt_every=500),
                SamplingConfig(batch_size=500),
                GenerationEvalConfig(n_samples=2000)),
        _preset("gpu", TransformerConfig(n_layer=12, n_head=12, n_embd=768, dropout=0.1),
                PriorTrainConfig(batch_size=32, base_lr=4.5e-6, steps=50_000, warmup_steps=1000, log_every=100,
                                 ckpt_every=2000),
                SamplingConfig(top_k=250, cfg_scale=1.5, batch_size=128),
                GenerationEvalConfig(n_samples=10_000, reference_images=10_000)),
        _preset("paper", TransformerConfig(n_layer=24, n_head=16, n_embd=1024, dropout=0.1),
                PriorTrainConfig(batch_size=32, base_lr=4.5e-6, steps=200_000, warmup_steps=1000, log_every=100,
                                 ckpt_every=5000),
                SamplingConfig(top_k=250, cfg_scale=1.5, batch_size=128),
                GenerationEvalConfig(n_samples=50_000, reference_images=50_000)),
    ]
}
# The tokenizers of vqct-official (VQCT's own run, bench/runs/presets.py) get the paper-scale prior.
PRIOR_PRESETS["vqct-official"] = dataclasses.replace(PRIOR_PRESETS["paper"], preset="vqct-official")


def prior_preset(name: str) -> PriorConfig:
    if name not in PRIOR_PRESETS:
        raise UserError(unknown_name_message("prior preset", name, sorted(PRIOR_PRESETS)))
    return PRIOR_PRESETS[name]
