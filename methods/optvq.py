"""OptVQ: codes assigned by optimal transport (Sinkhorn over the batch) instead of nearest neighbour.

Preventing Local Pitfalls in Vector Quantization via Optimal Transport (Zhang, Zheng, Zhou, Lu, 2024),
https://arxiv.org/abs/2412.15195 (released code: github.com/zbr17/OptVQ, `VectorQuantizerSinkhorn`).

Nearest-neighbour assignment sends most latents to the few codes that happen to lie near the data,
and the others never move ("index collapse"). OptVQ assigns a training batch as a whole: the
distance matrix C (N latents x K codes, Euclidean) is normalised (standardised and shifted to a
minimum of 0, the released configurations' "all"), the entropic transport plan with uniform
marginals over latents and over codes is computed by a few Sinkhorn-Knopp iterations on
exp(-epsilon C), and each latent takes the code its plan row weighs most. Every code receives a
share of the batch, so every code gets gradient. The codes are a learned codebook through a learned
linear map (C = proj(E), as the released `use_proj=True`), and z_q is straight-through with the
released loss ||z - sg[e]||^2 + beta ||sg[z] - e||^2 (beta on the codebook term).

Eval-mode assignment: `eval_assignment="nearest"` (the default) takes the nearest code, so a token
depends on its latent only and not on the other images of the evaluation batch; "sinkhorn" runs the
transport over the evaluation batch too, as the released code does at inference: over this process's
batch only, never a collective (methods.distributed.local_only), since evaluation runs on one rank of
a data-parallel group while the others wait. Either way z_q is the chosen code itself, so
`decode_indices` reproduces it exactly.

Multi-head (the paper's best models, 4 or 8 heads): the latent's dim channels are split into `heads`
groups of dim/heads channels, each quantised with the one shared codebook; indices are then
(B, H, W, heads), all in [0, K).

Under data parallelism the normalisation statistics and the Sinkhorn marginals are reduced over the
workers (methods.distributed), so the workers' assignments are those of one batch of all their
latents (the released code reduces the marginals but normalises per worker).
Left out: the released k-means initialisation of the codebook from dataset features, and sampling
the code from the plan (`use_prob`, off in its configurations).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.core.errors import UserError
from bench.core.option_ranges import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, option

from . import distributed
from .base import Quantizer, QuantOut, codebook_commitment_loss, flatten_latent, nearest_codes, straight_through
from .registry import register_method

NORMALIZE = ("all", "dim", "none")
EVAL_ASSIGNMENTS = ("nearest", "sinkhorn")


@dataclass
class OptVQOptions:
    # Weight of the codebook term ||sg[z] - e||^2; the commitment term has weight 1 (released loss "l2").
    beta: float = option(0.25, NON_NEGATIVE)
    # Multiplies the normalised cost inside exp(-epsilon C) (1/epsilon in the usual entropic-OT
    # notation): larger is closer to a hard assignment. 10 in the released configurations.
    epsilon: float = option(10.0, POSITIVE)
    sinkhorn_iters: int = option(5, AT_LEAST_ONE)  # Sinkhorn-Knopp iterations (released configurations)
    # How the distance matrix is scaled before exp(): "all" standardises it and shifts its minimum to
    # 0 (released configurations), "dim" divides by sqrt(code dim), "none" leaves it.
    normalize: str = "all"
    heads: int = option(1, AT_LEAST_ONE)  # latent split into this many groups, each quantised with the shared codebook
    # A learned linear map applied to the codebook (the released use_proj=True): every gradient step on
    # it moves all codes, as in SimVQ.
    use_proj: bool = True
    eval_assignment: str = "nearest"  # "nearest" | "sinkhorn" (see the module docstring)


@register_method("optvq", "OptVQ: codes assigned by Sinkhorn optimal transport over the batch in training, STE")
class OptVQQuantizer(Quantizer):
    """OptVQ (https://arxiv.org/abs/2412.15195)."""

    Options = OptVQOptions

    @classmethod
    def check(cls, codebook_size: int, dim: int, options: OptVQOptions) -> None:
        if options.normalize not in NORMALIZE:
            raise UserError(f"optvq: normalize must be one of {', '.join(NORMALIZE)}, got {options.normalize!r}")
        if options.eval_assignment not in EVAL_ASSIGNMENTS:
            raise UserError(f"optvq: eval_assignment must be one of {', '.join(EVAL_ASSIGNMENTS)}, "
                            f"got {options.eval_assignment!r}")
        if dim % options.heads:
            valid = [h for h in range(1, dim + 1) if dim % h == 0]
            raise UserError(f"optvq: heads must divide the latent dimension {dim}; valid: {', '.join(map(str, valid))}; "
                            f"got {options.heads}")

    @classmethod
    def parameter_count(cls, codebook_size: int, dim: int, options: OptVQOptions) -> int:
        code_dim = dim // options.heads
        return codebook_size * code_dim + (code_dim * code_dim + code_dim if options.use_proj else 0)

    def __init__(self, codebook_size: int, dim: int, options: OptVQOptions) -> None:
        super().__init__()
        self.check(codebook_size, dim, options)
        self.options = options
        self.codebook_size = codebook_size
        self.latent_channels = dim
        self.code_dim = dim // options.heads
        self.embedding = nn.Embedding(codebook_size, self.code_dim)  # N(0, 1), as the released code
        if options.use_proj:
            self.proj = nn.Linear(self.code_dim, self.code_dim)
            nn.init.normal_(self.proj.weight, std=self.code_dim**-0.5)

    def codebook(self) -> Tensor:
        """The codes used, (K, dim / heads)."""
        return self.proj(self.embedding.weight) if self.options.use_proj else self.embedding.weight

    def forward(self, z: Tensor) -> QuantOut:
        b, c, h, w = z.shape
        rows = flatten_latent(z).reshape(-1, self.code_dim)  # (B*H*W*heads, dim/heads), heads innermost
        codes = self.codebook()
        if self.training:
            idx = self.sinkhorn_assignment(rows.detach(), codes.detach())
        elif self.options.eval_assignment == "sinkhorn":
            with distributed.local_only():
                idx = self.sinkhorn_assignment(rows.detach(), codes.detach())
        else:
            idx = nearest_codes(rows, codes)[:, 0]
        q_rows = F.embedding(idx, codes)
        # The released loss: weight 1 on ||z - sg[e]||^2, beta on ||sg[z] - e||^2 (vqgan's legacy placement).
        loss, logs = codebook_commitment_loss(q_rows, rows, self.options.beta, legacy=True)
        z_q = straight_through(rows, q_rows).view(b, h, w, c).permute(0, 3, 1, 2).contiguous()
        indices = idx.view(b, h, w, self.options.heads)
        return QuantOut(z_q, indices[..., 0] if self.options.heads == 1 else indices, loss, logs)

    @classmethod
    def budget_bits(cls, codebook_size: int, dim: int, options: OptVQOptions, side: int) -> float:
        return side * side * options.heads * math.log2(codebook_size)  # heads as given, K varies

    def index_level_sizes(self) -> tuple[int, ...]:
        return (self.codebook_size,) * self.options.heads  # every head indexes the one shared codebook

    def decode_indices(self, indices: Tensor) -> Tensor:
        idx = indices.unsqueeze(-1) if self.options.heads == 1 else indices  # (B, H, W, heads)
        b, h, w, _ = idx.shape
        codes = F.embedding(idx, self.codebook())  # the same product as forward, so the same values
        return codes.reshape(b, h, w, self.latent_channels).permute(0, 3, 1, 2).contiguous()

    @torch.no_grad()
    def sinkhorn_assignment(self, rows: Tensor, codes: Tensor) -> Tensor:
        """The code each row takes under the entropic transport plan between all workers' rows
        (uniform weights) and the codes (uniform weights): its plan row's largest entry."""
        rows, codes = rows.float(), codes.float()
        sq = (rows.pow(2).sum(1, keepdim=True) + codes.pow(2).sum(1) - 2 * rows @ codes.t()).clamp(min=0)
        cost = self._normalize(sq.sqrt())
        plan = sinkhorn(cost, self.options.sinkhorn_iters, self.options.epsilon)
        return plan.argmax(1)

    def _normalize(self, cost: Tensor) -> Tensor:
        mode = self.options.normalize
        if mode == "dim":
            return cost / self.code_dim**0.5
        if mode == "none":
            return cost
        # Standardised with the mean and (unbiased) standard deviation of every worker's matrix, then
        # shifted so that the smallest entry anywhere is 0.
        stats = torch.stack([cost.sum(), torch.tensor(float(cost.numel()), device=cost.device)])
        distributed.all_reduce_sum_(stats)
        mean = stats[0] / stats[1]
        spread = distributed.all_reduce_sum_((cost - mean).pow(2).sum())
        std = (spread / (stats[1] - 1).clamp(min=1)).sqrt()
        cost = (cost - mean) / (std + 1e-6)
        return cost - distributed.all_reduce_min_(cost.min())


def sinkhorn(cost: Tensor, iters: int, epsilon: float) -> Tensor:
    """Sinkhorn-Knopp on exp(-epsilon cost) for cost (N, K): alternately scale each code's total to 1/K
    and each row's total to 1/N (N and the code totals over all workers), starting from the matrix
    normalised to sum 1; returns the plan (N, K) with rows summing to 1. The 1e-8 guards keep a code
    whose every entry underflowed at zero instead of NaN."""
    plan = torch.exp(-cost * epsilon)
    k = plan.shape[1]
    n = distributed.all_reduce_sum_(torch.tensor(float(plan.shape[0]), device=plan.device))
    plan /= distributed.all_reduce_sum_(plan.sum()) + 1e-8
    for _ in range(iters):
        plan /= distributed.all_reduce_sum_(plan.sum(0, keepdim=True)) + 1e-8
        plan /= k
        plan /= plan.sum(1, keepdim=True) + 1e-8
        plan /= n
    return plan * n
