"""CVQ-VAE: VQ with an online clustered codebook; rarely used codes are re-anchored to encoded features.

Online Clustered Codebook (Zheng, Vedaldi, ICCV 2023), https://arxiv.org/abs/2307.15139,
Section 3.2 (released code: github.com/lyndonzheng/CVQ-VAE, `quantise.py`).

Quantisation is VQ-VAE's (nearest code, straight-through, codebook + beta * commitment loss). On
top, during training:
1. A running average usage per code: N_k <- gamma N_k + (1 - gamma) n_k / N, n_k the batch count.
2. An anchor per code, taken from this batch's encoder features: with `anchor="probrandom"` (the
   paper's default) feature i is sampled for code k with probability softmax_i(similarity(z_i, e_k));
   with `anchor="closest"` the most similar feature is taken.
3. Each code moves towards its anchor by alpha_k = exp(-N_k K 10 / (1 - gamma) - eps):
   e_k <- (1 - alpha_k) e_k + alpha_k anchor_k. alpha_k is a soft threshold on usage: ~1 for a code
   that has not been used lately (it is re-anchored onto the data), ~0 for a code in use (it is
   left to the gradient). With gamma = 0.99 a code used at 1/1000 of the uniform rate already moves
   only by exp(-1) per step.
N is a registered buffer, so a checkpoint restores it. Sampling uses torch's global RNG, whose
state the trainer saves with each checkpoint. Under data parallelism the usage counts and the anchor
candidates are those of all workers, and rank 0's sampled anchors are used by all (methods.distributed).
The trainer brackets an optimizer step's micro-batches with `begin_step()` / `end_step()`: usage and
anchors are then updated once per step from all of them (candidates in micro-batch order, which is
the workers' rank order), so one worker accumulating 2 micro-batches and 2 workers taking one each
move the codes alike. The move happens after the step's backward passes and before the optimizer
step; the gradient of the codebook term does not depend on the codes' values (the lookup keeps only
indices), so it lands on the moved codes as in the released code, which moves them in the forward.

Differences from the released code: its optional contrastive loss (off in its default
configuration) and its feature-pool ("random") anchor are left out.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.core.errors import UserError
from bench.core.option_ranges import NON_NEGATIVE, UNIT_OPEN, option

from . import distributed
from .base import Quantizer, QuantOut, codebook_commitment_loss, flatten_latent, straight_through, unflatten_latent
from .registry import register_method

_DISTANCES = ("cos", "l2")
_ANCHORS = ("probrandom", "closest")


@dataclass
class CVQOptions:
    beta: float = option(0.25, NON_NEGATIVE)  # commitment weight on ||z - sg[e]||^2, VQ-VAE's value (as in CVQ-VAE's code)
    decay: float = option(0.99, UNIT_OPEN)  # gamma of the running average usage, and the scale of the re-anchoring rate
    # Similarity used to pick codes and anchors. The released code defaults to cosine: the nearest
    # code by angle, while the code vectors themselves stay unnormalised.
    distance: str = "cos"
    # How each code picks its anchor among this batch's features: "probrandom" samples in
    # proportion to softmax similarity (the paper's default); "closest" takes the most similar.
    anchor: str = "probrandom"


@register_method("cvq", "CVQ-VAE: VQ whose under-used codes are re-anchored to encoded features (online clustering)")
class CVQQuantizer(Quantizer):
    """CVQ-VAE online clustered codebook (https://arxiv.org/abs/2307.15139)."""

    Options = CVQOptions

    @classmethod
    def check(cls, codebook_size: int, dim: int, options: CVQOptions) -> None:
        if options.distance not in _DISTANCES:
            raise UserError(f"cvq: distance must be one of {', '.join(_DISTANCES)}, got {options.distance!r}")
        if options.anchor not in _ANCHORS:
            raise UserError(f"cvq: anchor must be one of {', '.join(_ANCHORS)}, got {options.anchor!r}")

    def __init__(self, codebook_size: int, dim: int, options: CVQOptions) -> None:
        super().__init__()
        self.check(codebook_size, dim, options)
        self.options = options
        self.codebook_size = codebook_size
        self.latent_channels = dim
        self.embedding = nn.Embedding(codebook_size, dim)
        self.embedding.weight.data.uniform_(-1.0 / codebook_size, 1.0 / codebook_size)  # as the released code
        self.register_buffer("embed_prob", torch.zeros(codebook_size))  # running average usage N_k
        self._pending: list[tuple[Tensor, Tensor]] | None = None  # this step's (rows, codes) between the brackets

    def similarity(self, rows: Tensor) -> Tensor:
        """(N, K) similarity of each row to each code; larger is closer."""
        codes = self.embedding.weight.detach()
        if self.options.distance == "cos":
            return F.normalize(rows, dim=1) @ F.normalize(codes, dim=1).t()
        # -||z - e||^2 in full: ||z||^2 does not change the argmax over codes, but it does change the
        # softmax over features that picks the anchors.
        return -(rows.pow(2).sum(1, keepdim=True) + codes.pow(2).sum(1) - 2 * rows @ codes.t())

    def forward(self, z: Tensor) -> QuantOut:
        rows = flatten_latent(z)
        with torch.no_grad():
            sim = self.similarity(rows.detach().float())
            idx = sim.argmax(1)
        q = unflatten_latent(self.embedding(idx), z)
        loss, logs = codebook_commitment_loss(q, z, self.options.beta)
        z_q = straight_through(z, q)
        if self.training:
            if self._pending is not None:
                self._pending.append((rows.detach().float(), idx))
            else:
                self._reanchor(rows.detach().float(), sim, idx)
        indices = idx.view(z.shape[0], z.shape[2], z.shape[3])
        return QuantOut(z_q, indices, loss, logs)

    def begin_step(self) -> None:
        """From here to `end_step`, training forward passes keep their features and codes instead of
        moving the codes (every micro-batch of the step is quantized against the same codes)."""
        self._pending = []

    def end_step(self) -> None:
        """One usage update and re-anchoring from every micro-batch since `begin_step`, as from one
        batch of all of them (and of every worker's)."""
        pending, self._pending = self._pending, None
        if pending:
            self._reanchor(torch.cat([r for r, _ in pending]), None, torch.cat([i for _, i in pending]))

    @torch.no_grad()
    def _reanchor(self, rows: Tensor, sim: Tensor | None, idx: Tensor) -> None:
        """`sim`: the rows' similarity to the codes, when the caller has it (None: computed here)."""
        k, decay = self.codebook_size, self.options.decay
        # Usage and anchors are those of all data-parallel workers' features together, and the sampled
        # anchors are rank 0's, so every worker moves its codes identically (identity on one worker).
        counts = torch.cat([torch.bincount(idx, minlength=k).float(), torch.tensor([float(idx.numel())], device=idx.device)])
        distributed.all_reduce_sum_(counts)
        self.embed_prob.mul_(decay).add_(counts[:k] / counts[k], alpha=1 - decay)
        if distributed.is_distributed():
            rows = distributed.gather_rows(rows)
            sim = None
        if sim is None:
            sim = self.similarity(rows)
        if self.options.anchor == "closest":
            anchor_rows = sim.argmax(0)
        else:
            anchor_rows = torch.multinomial(sim.t().softmax(1), 1).view(-1)
        anchors = distributed.broadcast_(rows[anchor_rows].contiguous())
        alpha = torch.exp(-(self.embed_prob * k * 10) / (1 - decay) - 1e-3).unsqueeze(1)
        # In place, after the lookup above: F.embedding saved only the indices for its backward, so
        # this step's gradient is unaffected and lands on the moved codes, as in the released code.
        self.embedding.weight.data.mul_(1 - alpha).add_(alpha * anchors)

    def decode_indices(self, indices: Tensor) -> Tensor:
        return self.embedding(indices).permute(0, 3, 1, 2).contiguous()
