"""LFQ: lookup-free quantisation, from MAGVIT-v2.

Language Model Beats Diffusion -- Tokenizer is Key to Visual Generation (Yu et al., ICLR 2024),
https://arxiv.org/abs/2310.05737, Section 3.1.

The latent has d = log2(K) channels. Each channel is quantised to its sign, q_i = sign(z_i) in
{-1, +1}, so the codebook is the implicit set {-1, 1}^d and needs no lookup; the index is the binary
number whose bits are (q_i > 0), channel 0 being the most significant bit. The entropy penalty

    L_entropy = E_z[ H(p(c | z)) ] - gamma * H( E_z[ p(c | z) ] ),   p(c | z) = softmax_c(2 z.c / tau)

pushes each latent to be confidently near one code (low per-sample entropy) while the batch as a
whole spreads over all codes (high codebook entropy). A commitment loss ||z - sg[q]||^2 keeps the
latent close to the corners of the hypercube.

K mapping: K must be a power of two, K = 2^d with d >= 1; `latent_channels` = d, so the `dim`
argument (the preset's embed_dim) is not used: quant_conv maps the encoder's z_channels to d.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.core.errors import UserError
from bench.core.option_ranges import NON_NEGATIVE, POSITIVE, option

from .base import Quantizer, QuantOut, flatten_latent, straight_through, unflatten_latent
from .registry import register_method

# Probabilities are clamped at this value before the log in the entropies: the per-sample
# distributions are very peaked (tau = 0.01), and log(0) would give NaN gradients. Same value as
# vector-quantize-pytorch's LFQ, which this implementation is checked against.
ENTROPY_EPS = 1e-5


def entropy(prob: Tensor, eps: float = ENTROPY_EPS) -> Tensor:
    """Entropy in nats of distributions over the last dimension, with log clamped at `eps`."""
    return -(prob * prob.clamp(min=eps).log()).sum(-1)


def power_of_two_message(method: str, k: int) -> str:
    lower = 2 ** max(1, math.floor(math.log2(max(k, 1))))
    upper = 2 ** max(1, math.ceil(math.log2(max(k, 1))))
    near = sorted({lower, upper} - {k})
    return (f"{method}: codebook size must be a power of two 2^d (d >= 1), got {k}; "
            f"nearest valid sizes: {', '.join(map(str, near))}")


@dataclass
class LFQOptions:
    # Weight of the entropy penalty. MAGVIT-v2 (and Open-MAGVIT2's released configs) use 0.1.
    entropy_weight: float = option(0.1, NON_NEGATIVE)
    # gamma: weight of the codebook-entropy term inside the penalty. 1 is the paper's loss
    # (per-sample minus codebook entropy); larger values favour code usage over confidence.
    diversity_gamma: float = option(1.0, NON_NEGATIVE)
    # tau of p(c | z) = softmax(2 z.c / tau). 0.01 as in Open-MAGVIT2 (vector-quantize-pytorch's
    # inv_temperature = 100): near-hard assignments, so the per-sample term measures confidence.
    temperature: float = option(0.01, POSITIVE)
    # Commitment weight beta of ||z - sg[q]||^2, as in MAGVIT-v2 / Open-MAGVIT2 (0.25).
    commitment_weight: float = option(0.25, NON_NEGATIVE)


@register_method("lfq", "LFQ (MAGVIT-v2): per-channel sign, K = 2^d, entropy penalty + commitment")
class LFQQuantizer(Quantizer):
    """Lookup-free quantisation (https://arxiv.org/abs/2310.05737)."""

    Options = LFQOptions

    @classmethod
    def parameter_count(cls, codebook_size: int, dim: int, options: LFQOptions) -> int:
        return 0  # the codebook is the set of sign vectors, implicit

    @classmethod
    def check(cls, codebook_size: int, dim: int, options: LFQOptions) -> None:
        if codebook_size < 2 or codebook_size & (codebook_size - 1):
            raise UserError(power_of_two_message("lfq", codebook_size))

    def __init__(self, codebook_size: int, dim: int, options: LFQOptions) -> None:
        super().__init__()
        self.check(codebook_size, dim, options)
        self.options = options
        self.codebook_size = codebook_size
        self.bits = codebook_size.bit_length() - 1
        self.latent_channels = self.bits  # LFQ defines its own code dimension: d = log2 K
        # Bit weights, most significant first: index = sum_i (q_i > 0) * 2^(d-1-i).
        self.register_buffer("bit_values", 2 ** torch.arange(self.bits - 1, -1, -1), persistent=False)
        self.register_buffer("codebook", self._bits_to_codes(torch.arange(codebook_size)), persistent=False)

    def _bits_to_codes(self, idx: Tensor) -> Tensor:
        """(...,) int64 -> (..., d) codes in {-1, 1}."""
        bits = (idx.unsqueeze(-1) & self.bit_values) != 0
        return bits.float() * 2.0 - 1.0

    def forward(self, z: Tensor) -> QuantOut:
        rows = flatten_latent(z)
        q_rows = torch.where(rows > 0, 1.0, -1.0).to(rows.dtype)
        idx = ((q_rows > 0).long() * self.bit_values).sum(-1)
        q = unflatten_latent(q_rows, z)
        commitment = F.mse_loss(z, q)
        loss = self.options.commitment_weight * commitment
        logs = {"commitment": commitment.detach()}
        if self.training:
            # Only while training: the (N, K) probabilities cost memory, and the loss is unused in eval.
            per_sample, codebook_entropy = self.entropies(rows)
            entropy_loss = per_sample - self.options.diversity_gamma * codebook_entropy
            loss = loss + self.options.entropy_weight * entropy_loss
            logs.update(entropy=entropy_loss.detach(), per_sample_entropy=per_sample.detach(),
                        codebook_entropy=codebook_entropy.detach())
        z_q = straight_through(z, q)
        return QuantOut(z_q, idx.view(z.shape[0], z.shape[2], z.shape[3]), loss, logs)

    def entropies(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """(mean per-sample entropy, entropy of the batch-mean distribution) of p(c | z) for rows (N, d)."""
        logits = rows.float() @ self.codebook.t() * (2.0 / self.options.temperature)
        prob = logits.softmax(-1)
        return entropy(prob).mean(), entropy(prob.mean(0))

    def decode_indices(self, indices: Tensor) -> Tensor:
        return self._bits_to_codes(indices).permute(0, 3, 1, 2).contiguous()
