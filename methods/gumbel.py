"""Gumbel-VQ: codes chosen by a Gumbel-softmax over logits, with temperature annealing and a KL to
the uniform prior, as in the VQGAN code's `GumbelQuantize`.

Categorical Reparameterization with Gumbel-Softmax (Jang, Gu, Poole, ICLR 2017),
https://arxiv.org/abs/1611.01144; used for image tokenizers by DALL-E's dVAE (Ramesh et al., 2021,
https://arxiv.org/abs/2102.12092) and by taming-transformers' `GumbelQuantize` / `GumbelVQ`
(https://arxiv.org/abs/2012.09841), whose behaviour and defaults this follows.

A 1x1 projection turns the latent into K logits per position. In training, one-hot samples are
drawn with the Gumbel-softmax at temperature tau (hard one-hot forward, soft gradient backward:
taming's `straight_through=True`), and z_q = one_hot @ E. The loss is kl_weight * KL(q(c|z) || U(K))
= kl_weight * sum_c q log(q K), averaged over positions. tau follows a cosine schedule from
`temp_start` to `temp_min` over `anneal_steps` training steps (taming's LambdaWarmUpCosineScheduler
with no warm-up); the step is a registered buffer incremented by each training forward pass, so a
resumed run continues the schedule where it stopped.

Difference from taming: in eval mode taming still samples Gumbel noise (hard=True), so the same
image gets different codes on every pass. Here eval takes the argmax of the logits, deterministic,
and z_q is exactly E[index] (what `decode_indices` returns).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.core.errors import UserError
from bench.core.option_ranges import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, option

from .base import Quantizer, QuantOut, flatten_latent, unflatten_latent
from .registry import register_method


@dataclass
class GumbelOptions:
    # Weight of KL(q || uniform). taming's GumbelVQ model passes 1e-8 (GumbelQuantize's own default,
    # 5e-4, is overridden by the model): a whisper of a prior, the Gumbel noise does the exploring.
    kl_weight: float = option(1e-8, NON_NEGATIVE)
    # Cosine temperature schedule of taming's Gumbel configuration: 0.9 -> 1e-6 over ~1M steps, i.e.
    # almost constant during short runs. Shorten anneal_steps to anneal within a short run.
    temp_start: float = option(0.9, POSITIVE)
    temp_min: float = option(1e-6, POSITIVE)
    anneal_steps: int = option(1_000_001, AT_LEAST_ONE)
    # Hard one-hot samples forward with the soft sample's gradient backward (taming's default);
    # False trains on the soft mixture of codes (eval is always hard).
    straight_through: bool = True


@register_method("gumbel", "Gumbel-VQ: Gumbel-softmax over projected logits, annealed temperature, KL to uniform prior")
class GumbelQuantizer(Quantizer):
    """Gumbel-softmax VQ (https://arxiv.org/abs/1611.01144), as taming's GumbelQuantize."""

    Options = GumbelOptions

    @classmethod
    def parameter_count(cls, codebook_size: int, dim: int, options: GumbelOptions) -> int:
        return 2 * codebook_size * dim + codebook_size  # logits projection and the code embedding

    @classmethod
    def check(cls, codebook_size: int, dim: int, options: GumbelOptions) -> None:
        if options.temp_min > options.temp_start:
            raise UserError(f"gumbel: temp_min {options.temp_min} is above temp_start {options.temp_start}")

    def __init__(self, codebook_size: int, dim: int, options: GumbelOptions) -> None:
        super().__init__()
        self.check(codebook_size, dim, options)
        self.options = options
        self.codebook_size = codebook_size
        self.latent_channels = dim
        self.proj = nn.Linear(dim, codebook_size)  # taming's 1x1 conv from the latent to K logits
        self.embed = nn.Embedding(codebook_size, dim)  # nn.Embedding's N(0, 1) init, as taming
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def temperature(self, step: int | None = None) -> float:
        """tau at a training step (default: the current one), cosine from temp_start to temp_min."""
        o = self.options
        t = min(1.0, (int(self.step) if step is None else step) / o.anneal_steps)
        return o.temp_min + 0.5 * (o.temp_start - o.temp_min) * (1 + math.cos(math.pi * t))

    def forward(self, z: Tensor) -> QuantOut:
        rows = flatten_latent(z)
        logits = self.proj(rows)
        logs: dict[str, Tensor] = {}
        if self.training:
            tau = self.temperature()
            one_hot = F.gumbel_softmax(logits, tau=tau, hard=self.options.straight_through, dim=1)
            idx = one_hot.argmax(1)
            q_rows = one_hot @ self.embed.weight
            self.step += 1
            logs["temperature"] = torch.tensor(tau)
        else:
            idx = logits.argmax(1)
            q_rows = self.embed(idx)
        qy = logits.softmax(1)
        kl = (qy * torch.log(qy * self.codebook_size + 1e-10)).sum(1).mean()
        logs["kl"] = kl.detach()
        indices = idx.view(z.shape[0], z.shape[2], z.shape[3])
        return QuantOut(unflatten_latent(q_rows, z), indices, self.options.kl_weight * kl, logs)

    def decode_indices(self, indices: Tensor) -> Tensor:
        return self.embed(indices).permute(0, 3, 1, 2).contiguous()
