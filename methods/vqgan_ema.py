"""VQGAN-EMA: nearest-neighbour VQ whose codebook follows exponential moving averages of its assignments.

Neural Discrete Representation Learning (van den Oord, Vinyals, Kavukcuoglu, NeurIPS 2017),
https://arxiv.org/abs/1711.00937, Appendix A.1 (EMA codebook updates); as used by the VQGAN code base
(taming-transformers' `EMAVectorQuantizer`, https://arxiv.org/abs/2012.09841).

The codebook gets no gradient and no codebook loss: after each training forward pass, each code
becomes the moving average of the encoder vectors assigned to it,

    N_k <- decay * N_k + (1 - decay) * n_k            n_k: vectors assigned to code k in the batch
    m_k <- decay * m_k + (1 - decay) * sum_{i->k} z_i
    e_k  = m_k / N~_k,  N~_k = (N_k + eps) / (sum_j N_j + K eps) * sum_j N_j   (Laplace smoothing)

and the encoder is pulled towards its codes by the commitment loss beta * ||z - sg[e]||^2 only.
`N` and `m` are registered buffers, so a checkpoint (safetensors of the state dict) restores them.
The batch counts and sums are summed over data-parallel workers (methods.distributed), so every
worker keeps the same codebook. Within one optimizer step the trainer brackets the micro-batches
with `begin_step()` / `end_step()`: the statistics of every micro-batch are then applied as one
update at the end, so one worker accumulating 2 micro-batches, 2 workers taking one each and one
worker taking the whole batch all make the same update (a forward pass outside the brackets, as in
the method tests, updates at once). The options of methods/codebook_tricks.py apply: k-means
initialisation sets N and m from the clusters; dead-code replacement compares N with its threshold.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.core.option_ranges import NON_NEGATIVE, POSITIVE, UNIT_OPEN, option

from . import distributed
from .base import Quantizer, QuantOut, flatten_latent, nearest_codes, unflatten_latent
from .codebook_tricks import (
    CodebookTrickOptions,
    _counts_and_sums,
    dead_code_replacements,
    kmeans,
    quantized_output,
    refresh_ema_codes_,
)
from .registry import register_method


@dataclass
class VQGANEMAOptions(CodebookTrickOptions):
    beta: float = option(0.25, NON_NEGATIVE)  # commitment weight, VQ-VAE's value; the only loss this quantizer adds
    decay: float = option(0.99, UNIT_OPEN)  # EMA decay of counts and sums (VQ-VAE, taming's EMAVectorQuantizer)
    # Laplace smoothing of the counts: keeps an unused code's denominator away from zero, so the
    # division m_k / N_k never blows up (VQ-VAE's epsilon).
    eps: float = option(1e-5, POSITIVE)


@register_method("vqgan-ema", "VQGAN-EMA: nearest-neighbour VQ, codebook by EMA of assignments (decay 0.99), commitment loss only")
class VQGANEMAQuantizer(Quantizer):
    """VQ-VAE / VQGAN with an EMA codebook (https://arxiv.org/abs/1711.00937, Appendix A.1)."""

    Options = VQGANEMAOptions

    bounded_memory = True

    def __init__(self, codebook_size: int, dim: int, options: VQGANEMAOptions) -> None:
        super().__init__()
        self.check(codebook_size, dim, options)
        self.options = options
        self.codebook_size = codebook_size
        self.latent_channels = dim
        # The same initialisation as `vqgan` (uniform in +-1/K), so that the two differ only in how
        # the codebook is updated. taming's EMAVectorQuantizer draws N(0, 1) codes instead; with
        # this benchmark's encoder (latents of norm ~1) that left all but a handful of codes
        # farther away than the nearest few, never assigned and so never moved by the EMA.
        embed = torch.empty(codebook_size, dim).uniform_(-1.0 / codebook_size, 1.0 / codebook_size)
        self.register_buffer("embed", embed)
        # Counts start at one and sums at the codes themselves (vector-quantize-pytorch's choice,
        # not taming's zeros): a code that is never assigned then stays where it is instead of
        # drifting to m_k / eps, i.e. to a huge norm, as it does with zero-initialised counts.
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        self.register_buffer("embed_avg", embed.clone())
        if options.kmeans_init:  # only then, so that the default's state dict is unchanged
            self.register_buffer("initted", torch.tensor(False))
        self._pending: list[tuple[Tensor, Tensor]] | None = None  # this step's (rows, codes) between the brackets

    def forward(self, z: Tensor) -> QuantOut:
        rows = flatten_latent(z)
        if self.training and self.options.kmeans_init and not bool(self.initted):
            self._kmeans_init(rows.detach())
        idx = nearest_codes(rows, self.embed)[:, 0]
        q_rows = F.embedding(idx, self.embed)  # the codes before this step's update
        if self.training:
            if self._pending is not None:
                self._pending.append((rows.detach().float(), idx))
            else:
                self._update(rows.detach().float(), idx)
        q = unflatten_latent(q_rows, z)
        commitment = F.mse_loss(z, q)
        z_q = quantized_output(z, q, self.options.rotation_trick, self.training)
        indices = idx.view(z.shape[0], z.shape[2], z.shape[3])
        return QuantOut(z_q, indices, self.options.beta * commitment, {"commitment": commitment.detach()})

    def begin_step(self) -> None:
        """From here to `end_step`, training forward passes collect their statistics instead of
        updating the codebook (every micro-batch of a step is quantized against the same codes, as on
        data-parallel workers). k-means initialisation still happens on the first micro-batch."""
        self._pending = []

    def end_step(self) -> None:
        """One EMA update (and dead-code replacement) from every micro-batch since `begin_step`, their
        rows in micro-batch order, summed and gathered over the workers like a single batch's."""
        pending, self._pending = self._pending, None
        if pending:
            self._update(torch.cat([r for r, _ in pending]), torch.cat([i for _, i in pending]),
                         stats=self._summed_stats(pending))

    def _summed_stats(self, pending: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        """Counts and sums per micro-batch, added in micro-batch order, then over the workers. WHY per
        micro-batch: 2 workers each sum their own micro-batch and the all-reduce adds the two partial
        sums; summing the accumulating worker's rows the same way makes its statistics the same floats
        (one sum over all rows would add in another order, a rounding difference that training grows)."""
        counts, sums = _counts_and_sums(*pending[0], self.codebook_size, collective=False)
        for rows, idx in pending[1:]:
            c, m = _counts_and_sums(rows, idx, self.codebook_size, collective=False)
            counts, sums = counts + c, sums + m
        stats = distributed.all_reduce_sum_(torch.cat([counts.unsqueeze(1), sums], dim=1))
        return stats[:, 0], stats[:, 1:]

    @torch.no_grad()
    def _kmeans_init(self, rows: Tensor) -> None:
        """The EMA statistics of the k-means clusters: counts = cluster sizes, sums = centroid x size,
        and the codes they give. An empty cluster keeps its seed as a code with a count of one, as
        every code starts."""
        means, counts = kmeans(rows, self.codebook_size, self.options.kmeans_iters)
        counts = counts.clamp(min=1)
        self.cluster_size.copy_(counts)
        self.embed_avg.copy_(means * counts.unsqueeze(1))
        refresh_ema_codes_(self.embed, self.embed_avg, self.cluster_size, self.options.eps)
        self.initted.fill_(True)

    @torch.no_grad()
    def _update(self, rows: Tensor, idx: Tensor, stats: tuple[Tensor, Tensor] | None = None) -> None:
        """The EMA step (VQ-VAE Appendix A.1) from this batch's counts and sums over all workers
        (`stats`, when the caller summed them already), then dead-code replacement."""
        counts, sums = stats if stats is not None else _counts_and_sums(rows, idx, self.codebook_size)
        decay = self.options.decay
        self.cluster_size.mul_(decay).add_(counts, alpha=1 - decay)
        self.embed_avg.mul_(decay).add_(sums, alpha=1 - decay)
        refresh_ema_codes_(self.embed, self.embed_avg, self.cluster_size, self.options.eps)
        threshold = self.options.threshold_ema_dead_code
        if threshold > 0:
            # The counts are the usage: a dead code restarts on an encoder output with the threshold as
            # its count, so that it is not replaced again at once.
            replaced = dead_code_replacements(self.cluster_size, threshold, rows)
            if replaced is not None:
                code_idx, vectors = replaced
                self.embed[code_idx] = vectors
                self.cluster_size[code_idx] = threshold
                self.embed_avg[code_idx] = vectors * threshold

    def decode_indices(self, indices: Tensor) -> Tensor:
        return F.embedding(indices, self.embed).permute(0, 3, 1, 2).contiguous()
