"""IBQ: index backpropagation quantisation; every code gets a gradient through a straight-through
softmax over all codes.

Taming Scalable Visual Tokenizer for Autoregressive Image Generation (Shi, Luo, Ge, Yang, Shan,
Wang, 2024; "Scalable Image Tokenization with Index Backpropagation Quantization"),
https://arxiv.org/abs/2412.02692; released code: github.com/TencentARC/SEED-Voken (IBQ).

Logits are the dot products z.e_k with every code. The index is argmax_k softmax(logits); the
one-hot of that index is made differentiable with the straight-through trick over the softmax,
one_hot = hard - sg[soft] + soft, and z_q = one_hot @ E. Forward, z_q is exactly the selected code;
backward, the gradient of z_q reaches all K codes (through the softmax weights and through E) and
the encoder through the logits, so no code is left without gradient (the cause of codebook
collapse in VQ with a large K). The double quantisation loss adds the VQ-VAE loss for both the
straight-through z_q and the hard lookup E[index]:

    L = ||sg[z] - z_q||^2 + beta ||z - sg[z_q]||^2 + ||sg[z] - E[i]||^2 + beta ||z - sg[E[i]]||^2

An optional MAGVIT-v2 entropy penalty on softmax(logits / tau) (IBQ's released configurations
switch one on) is off by default here so that IBQ's own mechanism is measured.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.core.option_ranges import NON_NEGATIVE, POSITIVE, option

from .base import Quantizer, QuantOut, flatten_latent, unflatten_latent
from .lfq import entropy
from .registry import register_method


@dataclass
class IBQOptions:
    beta: float = option(0.25, NON_NEGATIVE)  # commitment weight in both halves of the double quantisation loss
    # Entropy penalty (per-sample minus codebook entropy of softmax(logits / tau)); 0 switches it
    # off. IBQ's released training configurations turn it on; see the module docstring.
    entropy_weight: float = option(0.0, NON_NEGATIVE)
    entropy_temperature: float = option(0.01, POSITIVE)  # tau of that penalty, MAGVIT-v2 / Open-MAGVIT2's value


@register_method("ibq", "IBQ: straight-through softmax over all codes (every code gets gradient), double quantisation loss")
class IBQQuantizer(Quantizer):
    """Index backpropagation quantisation (https://arxiv.org/abs/2412.02692)."""

    Options = IBQOptions

    def __init__(self, codebook_size: int, dim: int, options: IBQOptions) -> None:
        super().__init__()
        self.check(codebook_size, dim, options)
        self.options = options
        self.codebook_size = codebook_size
        self.latent_channels = dim
        self.embedding = nn.Embedding(codebook_size, dim)
        self.embedding.weight.data.uniform_(-1.0 / codebook_size, 1.0 / codebook_size)  # as taming / IBQ

    def forward(self, z: Tensor) -> QuantOut:
        rows = flatten_latent(z)
        weight = self.embedding.weight
        logits = rows @ weight.t()
        idx = logits.argmax(1)  # argmax of the softmax is the argmax of the logits
        hard_rows = self.embedding(idx)
        if torch.is_grad_enabled() and (rows.requires_grad or weight.requires_grad):
            soft = logits.softmax(1)
            hard = F.one_hot(idx, self.codebook_size).to(soft.dtype)
            q_rows = (hard - soft.detach() + soft) @ weight
        else:
            q_rows = hard_rows  # no gradient wanted: the exact code, as decode_indices gives
        q, hard_q = unflatten_latent(q_rows, z), unflatten_latent(hard_rows, z)
        beta = self.options.beta
        vq = F.mse_loss(q, z.detach()) + beta * F.mse_loss(z, q.detach())
        double = F.mse_loss(hard_q, z.detach()) + beta * F.mse_loss(z, hard_q.detach())
        loss = vq + double
        logs = {"vq": vq.detach(), "double_quant": double.detach()}
        if self.options.entropy_weight > 0 and self.training:
            prob = (logits / self.options.entropy_temperature).softmax(1)
            ent = entropy(prob).mean() - entropy(prob.mean(0))
            loss = loss + self.options.entropy_weight * ent
            logs["entropy"] = ent.detach()
        indices = idx.view(z.shape[0], z.shape[2], z.shape[3])
        return QuantOut(q, indices, loss, logs)

    def decode_indices(self, indices: Tensor) -> Tensor:
        return self.embedding(indices).permute(0, 3, 1, 2).contiguous()
