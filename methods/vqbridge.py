"""VQBridge (FVQ, "FullVQ"): nearest-neighbour VQ against a codebook passed through a learned projector.

Scalable Training for Vector-Quantized Networks with 100% Codebook Utilization (Chang, Qin, Qiao,
Wang, Zhu, Ma, Wang; ICLR 2026), https://arxiv.org/abs/2509.10140; official code
https://github.com/yfChang-cv/FVQ (tokenizer/tokenizer_image/qbridge_ViT.py, vq_model_qbridge_release.py,
vq_train_qbridge_lr_release.py). What was read from it is listed in docs/methods.md ("vqbridge").

The codes searched are B(C), not C: the learned (K, dim) codebook C goes whole through the bridge B
before every search, so every step's codebook gradient reaches B's weights, which move all codes at
once (the reason no code dies: a code the data never picks still moves with the others).
B is compress - process - recover: groups of `codes_per_token` codes are flattened and linearly
compressed to one token of `width` channels; `depth` pre-norm transformer blocks (no positional
embedding) process the K / codes_per_token tokens; a final LayerNorm + linear recovers each token's
group of codes. The official code lays the codes out as a sqrt(K) x sqrt(K) image and embeds 4 x 4
patches; without positional embeddings that is the same network as a group of 16 consecutive codes up
to a fixed relabelling of the codes (tests/methods/test_vqbridge.py checks this), and the 1-d grouping
takes any K that is a multiple of the group. Initialisation as the official code: xavier-uniform
linear weights, zero biases, and a zero final linear layer, so B(C) starts at all-zero codes (every
position picks code 0 until the first update spreads them).

Loss: VQ-VAE's ||sg[z] - B(C)_i||^2 + beta ||z - sg[B(C)_i]||^2, beta 0.25 (the official code's);
z_q straight-through. `joint_loss` gives vector-quantize-pytorch's form instead (one term
beta ||z - B(C)_i||^2 whose gradient moves both sides), for the parity test.

Learning-rate annealing (the paper's "learning annealing"; official `combined_lr_lambda`, sche_type
"lin"): a linear warm-up from `warmup_start` over the first `warmup` of the steps, the full rate for
the first `hold` of the rest, then linear decay to `final` at the last step. The official code applies
it to every parameter of the generator and the discriminator; here it goes to this quantizer's own
parameters only (`anneal`), through `Quantizer.learning_rate_groups`, so the encoder, decoder and
discriminator train under the recipe every method shares.

The bridge runs in float32 even under the trainer's bf16 autocast: the codes the indices refer to are
then the same whatever the caller's precision, so `decode_indices` (which recomputes B(C) from the
current weights, no cache that could go stale after an optimizer step or a checkpoint load) gives
forward's z_q exactly. B has no dropout or batch statistics: train and eval modes give the same codes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.core.errors import UserError
from bench.core.option_ranges import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, at_least, interval, option

from .base import (
    LearningRateGroup,
    Quantizer,
    QuantOut,
    codebook_commitment_loss,
    flatten_latent,
    nearest_codes,
    straight_through,
    unflatten_latent,
)
from .registry import register_method

_ANNEAL = ("quantizer", "bridge", "off")
_LN_EPS = 1e-6  # the official blocks' LayerNorm eps (no affine parameters)


@dataclass
class VQBridgeOptions:
    beta: float = option(0.25, NON_NEGATIVE)  # commitment weight (the official commit_loss_beta)
    # Bridge size: the official default QBridge-S/4 (ModelArgs.QB_type): 4 x 4 codes per token, 4 heads
    # of 16 channels, 2 blocks, MLP ratio 2. Its recon scripts use QBridge-L/4 (heads of 64 channels).
    codes_per_token: int = option(16, AT_LEAST_ONE)  # the compress step's group; must divide K
    width: int = option(64, AT_LEAST_ONE)  # token channels (head_hidden_size x num_heads)
    heads: int = option(4, AT_LEAST_ONE)  # attention heads; must divide width
    depth: int = option(2, at_least(0))  # transformer blocks; 0 leaves compress -> recover only
    mlp_ratio: float = option(2.0, POSITIVE)  # MLP hidden channels / width
    # The loss as vector-quantize-pytorch writes it, beta ||z - q||^2 moving codes and encoder alike
    # (for the parity test); off: the paper's ||sg[z] - q||^2 + beta ||z - sg[q]||^2.
    joint_loss: bool = False  # peer's one-term loss instead of the paper's two terms
    anneal: str = "quantizer"  # quantizer (codes and bridge) | bridge | off: what follows the schedule
    warmup: float = option(0.1, interval(0, 1, "[)"))  # fraction of the steps (official scripts: 4 of 40 epochs)
    warmup_start: float = option(0.005, interval(0, 1, "(]"))  # rate factor at step 0 (official wp0)
    hold: float = option(0.3, interval(0, 1, "[)"))  # fraction after warm-up at the full rate (official lrT)
    final: float = option(0.01, interval(0, 1, "(]"))  # rate factor at the last step (official wpe)


def annealing_factor(step: int, total_steps: int, options: VQBridgeOptions) -> float:
    """The official schedule's factor on the learning rate at optimizer step `step` (0-based) of `total_steps`."""
    warmup_steps = int(options.warmup * total_steps)
    if step < warmup_steps:
        return options.warmup_start + (1 - options.warmup_start) * step / warmup_steps
    span = total_steps - 1 - warmup_steps
    passed = (step - warmup_steps) / span if span > 0 else 1.0  # a run of one step after warm-up: the last
    if passed < options.hold:
        return 1.0
    return options.final + (1 - options.final) * (1 - passed) / (1 - options.hold)


class BridgeBlock(nn.Module):
    """A pre-norm transformer block as the official ViTBlock: LayerNorms without affine parameters,
    multi-head self-attention with a fused qkv projection (bias on), a tanh-GELU MLP."""

    def __init__(self, width: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        hidden = int(width * mlp_ratio)
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: Tensor) -> Tensor:
        *lead, n, width = x.shape
        h = F.layer_norm(x, (width,), eps=_LN_EPS)
        q, k, v = self.qkv(h).view(*lead, n, 3, self.heads, width // self.heads).movedim(-3, 0).transpose(-3, -2)
        attended = F.scaled_dot_product_attention(q, k, v).transpose(-3, -2).reshape(*lead, n, width)
        x = x + self.proj(attended)
        h = F.layer_norm(x, (width,), eps=_LN_EPS)
        return x + self.fc2(F.gelu(self.fc1(h), approximate="tanh"))


class VQBridgeNet(nn.Module):
    """B: (..., K, dim) codes -> (..., K, dim) codes, compress - process - recover (module docstring).
    Leading dimensions pass through, so vector-quantize-pytorch's (1, K, dim) codebook fits as it is."""

    def __init__(self, dim: int, codes_per_token: int, width: int, heads: int, depth: int, mlp_ratio: float) -> None:
        super().__init__()
        self.dim, self.group = dim, codes_per_token
        self.compress = nn.Linear(codes_per_token * dim, width)
        self.blocks = nn.ModuleList([BridgeBlock(width, heads, mlp_ratio) for _ in range(depth)])
        self.recover = nn.Linear(width, codes_per_token * dim)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.zeros_(self.recover.weight)

    def forward(self, codes: Tensor) -> Tensor:
        *lead, num_codes, dim = codes.shape
        x = self.compress(codes.reshape(*lead, num_codes // self.group, self.group * dim))
        for block in self.blocks:
            x = block(x)
        x = self.recover(F.layer_norm(x, (x.shape[-1],), eps=_LN_EPS))
        return x.reshape(*lead, num_codes, dim)


def bridge_parameter_count(dim: int, options: VQBridgeOptions) -> int:
    """Parameters of B, from its shape alone (the memory check runs before any model is built)."""
    g, w = options.codes_per_token, options.width
    hidden = int(w * options.mlp_ratio)
    block = (3 * w * w + 3 * w) + (w * w + w) + (w * hidden + hidden) + (hidden * w + w)
    return (g * dim * w + w) + options.depth * block + (w * g * dim + g * dim)


@register_method("vqbridge", "VQBridge (FVQ): nearest-neighbour VQ against the codebook passed through a "
                             "learned compress-process-recover transformer, annealed learning rate")
class VQBridgeQuantizer(Quantizer):
    """FVQ / VQBridge (https://arxiv.org/abs/2509.10140)."""

    Options = VQBridgeOptions

    bounded_memory = True

    @classmethod
    def check(cls, codebook_size: int, dim: int, options: VQBridgeOptions) -> None:
        g = options.codes_per_token
        if codebook_size % g:
            below, above = codebook_size // g * g, -(-codebook_size // g) * g
            nearest = " or ".join(str(k) for k in (below, above) if k > 0)
            raise UserError(f"vqbridge: K must be a multiple of codes_per_token ({g}) to group codes into tokens; "
                            f"got K={codebook_size}: use K={nearest}, or a codes_per_token that divides {codebook_size}")
        if options.width % options.heads:
            raise UserError(f"vqbridge: heads ({options.heads}) must divide width ({options.width}); "
                            f"change vqbridge.heads or vqbridge.width")
        if options.anneal not in _ANNEAL:
            raise UserError(f"vqbridge: anneal must be one of {', '.join(_ANNEAL)}, got {options.anneal!r}")

    @classmethod
    def parameter_count(cls, codebook_size: int, dim: int, options: VQBridgeOptions) -> int:
        return int(codebook_size) * int(dim) + bridge_parameter_count(dim, options)

    def __init__(self, codebook_size: int, dim: int, options: VQBridgeOptions) -> None:
        super().__init__()
        self.check(codebook_size, dim, options)
        self.options = options
        self.codebook_size = codebook_size
        self.latent_channels = dim
        # The official initialisation of the codes, uniform in +-1/K (VQGAN's).
        self.codes = nn.Parameter(torch.empty(codebook_size, dim).uniform_(-1.0 / codebook_size, 1.0 / codebook_size))
        self.bridge = VQBridgeNet(dim, options.codes_per_token, options.width, options.heads, options.depth,
                                  options.mlp_ratio)

    def codebook(self) -> Tensor:
        """The codes searched and looked up, B(C) (K x dim), in float32 whatever the autocast context."""
        with torch.autocast(device_type=self.codes.device.type, enabled=False):
            return self.bridge(self.codes.float())

    def forward(self, z: Tensor) -> QuantOut:
        codebook = self.codebook()
        idx = nearest_codes(flatten_latent(z.detach()), codebook.detach())[:, 0]
        q = unflatten_latent(F.embedding(idx, codebook), z)
        if self.options.joint_loss:
            commitment = F.mse_loss(q, z.float())
            loss, logs = self.options.beta * commitment, {"commitment": commitment.detach()}
        else:
            loss, logs = codebook_commitment_loss(q, z.float(), self.options.beta)
        indices = idx.view(z.shape[0], z.shape[2], z.shape[3])
        return QuantOut(straight_through(z, q), indices, loss, logs)

    def decode_indices(self, indices: Tensor) -> Tensor:
        # B(C) recomputed from the current weights, then a lookup: bit-identical to forward's z_q.
        return F.embedding(indices, self.codebook()).permute(0, 3, 1, 2).contiguous()

    def learning_rate_groups(self) -> tuple[LearningRateGroup, ...]:
        anneal = self.options.anneal
        if anneal == "off":
            return ()
        params = tuple(self.bridge.parameters()) + ((self.codes,) if anneal == "quantizer" else ())
        options = self.options
        return (LearningRateGroup("vqbridge", params, lambda step, total: annealing_factor(step, total, options)),)
