"""RVQ: residual vector quantisation, L codes per position, each quantising what the previous left.

SoundStream: An End-to-End Neural Audio Codec (Zeghidour et al., 2021), https://arxiv.org/abs/2107.03312,
Algorithm 1 and Section 3.2 (EMA codebooks, k-means initialisation, dead-code replacement, quantizer
dropout); for images, RQ-VAE, "Autoregressive Image Generation using Residual Quantization" (Lee et
al., CVPR 2022), https://arxiv.org/abs/2203.01941, Section 3.1 (one codebook shared by all depths).

    r_0 = z;  q_l = nearest code to r_l in codebook l;  r_{l+1} = r_l - q_l;  z_q = q_0 + ... + q_{L-1}

Codebooks follow EMAs of their assignments, as in both papers (the update of `vqgan-ema`, one per
codebook; a shared codebook takes one EMA step per training step from the assignments of all
levels). As in `vqgan-ema`, the trainer brackets an optimizer step's micro-batches with
`begin_step()` / `end_step()`: every codebook then takes one EMA step (and one dead-code replacement)
from all of them, their statistics summed per micro-batch in order and then over the data-parallel
workers, so one worker accumulating 2 micro-batches and 2 workers taking one each update alike. The loss is RQ-VAE's commitment loss, beta * sum_l ||r_l - sg[q_l]||^2 (r_l - q_l is
z minus the partial sum of the first l + 1 codes). The gradient reaches z through ONE
straight-through estimator on z_q, RQ-VAE's z + sg[z_q - z] (or the rotation trick from z to z_q).

Indices are (B, H, W, L). K is the size of one codebook. With separate codebooks (the default,
SoundStream's) level l's code j has the global index l * K + j, `codebook_size` is L * K and
`code_groups` names each level's range, so code usage is reported overall and per level; with a
shared codebook indices are in [0, K). `decode_indices` sums the L codes in the same order as
forward, so it reproduces z_q exactly in eval mode.

Quantizer dropout (SoundStream): in training each image keeps only its first n levels, n uniform in
[quantize_dropout_min_levels, L]; its later levels add nothing to z_q, get no commitment loss and do
not update the codebooks. Their indices are still the nearest codes of the residual (the harness
histograms training indices, which must be valid codes). Eval always uses all L levels.

Differences from vector-quantize-pytorch's ResidualVQ (its defaults, checked in test_references.py):
- It applies a straight-through estimator at every level and lets the residual carry the gradient
  (r_{l+1} = r_l - sg[q_l]), so z gets L times the decoder's gradient; ours passes it once.
- Its quantizer dropout draws one n per batch; ours one per image, as SoundStream.
- With a shared codebook it takes one EMA step per level per training step; ours one per step.
- Its rotation trick rotates each level's residual onto its code; ours rotates z onto z_q.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.core.errors import UserError
from bench.core.option_ranges import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, UNIT_OPEN, option

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
class RVQOptions(CodebookTrickOptions):
    levels: int = option(4, AT_LEAST_ONE)  # L, codes per position (RQ-VAE's depth D = 4 for 8x8x4 ImageNet codes)
    # One codebook for every level (RQ-VAE) instead of one per level (SoundStream). Shared codes see
    # residuals of every scale; separate ones specialise per level.
    shared_codebook: bool = False
    beta: float = option(0.25, NON_NEGATIVE)  # commitment weight, per level, the levels summed (RQ-VAE)
    decay: float = option(0.99, UNIT_OPEN)  # EMA decay of counts and sums (RQ-VAE, SoundStream)
    eps: float = option(1e-5, POSITIVE)  # Laplace smoothing of the counts, as vqgan-ema
    # SoundStream's quantizer dropout: train each image on a random number of levels so that a prefix
    # of its codes is already a coarse reconstruction (variable bitrate).
    quantize_dropout: bool = False
    quantize_dropout_min_levels: int = option(1, AT_LEAST_ONE)  # the fewest levels an image keeps under dropout


@register_method("rvq", "RVQ (SoundStream / RQ-VAE): L levels of EMA VQ on residuals, indices (B,H,W,L)")
class RVQQuantizer(Quantizer):
    """Residual VQ (https://arxiv.org/abs/2107.03312, https://arxiv.org/abs/2203.01941)."""

    Options = RVQOptions

    bounded_memory = True

    @classmethod
    def check(cls, codebook_size: int, dim: int, options: RVQOptions) -> None:
        if options.quantize_dropout_min_levels > options.levels:
            raise UserError(f"rvq: quantize_dropout_min_levels must be in [1, levels={options.levels}], "
                            f"got {options.quantize_dropout_min_levels}")

    @classmethod
    def parameter_count(cls, codebook_size: int, dim: int, options: RVQOptions) -> int:
        # No trained parameters; the codebooks and their sums are held (and checkpointed) instead.
        return (1 if options.shared_codebook else options.levels) * codebook_size * dim

    def __init__(self, codebook_size: int, dim: int, options: RVQOptions) -> None:
        super().__init__()
        self.check(codebook_size, dim, options)
        self.options = options
        self.level_size = codebook_size
        self.levels = options.levels
        self.latent_channels = dim
        books = 1 if options.shared_codebook else options.levels
        self.codebook_size = codebook_size * books
        if books > 1:
            self.code_groups = {f"level{l}": (l * codebook_size, (l + 1) * codebook_size) for l in range(books)}
        # As vqgan-ema: codes uniform in +-1/K, counts at one and sums at the codes.
        embed = torch.empty(books, codebook_size, dim).uniform_(-1.0 / codebook_size, 1.0 / codebook_size)
        self.register_buffer("embed", embed)
        self.register_buffer("cluster_size", torch.ones(books, codebook_size))
        self.register_buffer("embed_avg", embed.clone())
        if options.kmeans_init:
            self.register_buffer("initted", torch.tensor(False))
        # This step's (codebook, rows, codes) per micro-batch between begin_step and end_step; None outside.
        self._pending: list[tuple[int, Tensor, Tensor]] | None = None

    @classmethod
    def budget_bits(cls, codebook_size: int, dim: int, options: RVQOptions, side: int) -> float:
        return side * side * options.levels * math.log2(codebook_size)  # levels as given, K varies

    def index_level_sizes(self) -> tuple[int, ...]:
        return (self.level_size,) * self.levels  # each level draws from one codebook of K, shared or not

    def _book(self, level: int) -> int:
        return 0 if self.options.shared_codebook else level

    def _active_rows(self, z: Tensor) -> Tensor | None:
        """(N, L) bool: which levels each row uses this step (None: all of them)."""
        o = self.options
        if not (self.training and o.quantize_dropout and o.quantize_dropout_min_levels < self.levels):
            return None
        b, _, h, w = z.shape
        kept = torch.randint(o.quantize_dropout_min_levels, self.levels + 1, (b,), device=z.device)
        per_row = kept.repeat_interleave(h * w)
        return torch.arange(self.levels, device=z.device) < per_row.unsqueeze(1)

    def forward(self, z: Tensor) -> QuantOut:
        o = self.options
        rows = flatten_latent(z)
        active = self._active_rows(z)
        init = self.training and o.kmeans_init and not bool(self.initted)
        residual = rows  # keeps z's gradient: r_l = z - sg[q_0 + ... + q_{l-1}]
        quantized = torch.zeros_like(rows)
        commitment = rows.new_zeros(())
        indices, level_inputs = [], []
        for level in range(self.levels):
            book = self._book(level)
            if init and (level == 0 or not o.shared_codebook):  # a shared codebook: from z's rows only
                self._kmeans_init_(book, residual.detach())
            idx = nearest_codes(residual.detach(), self.embed[book])[:, 0]
            q = F.embedding(idx, self.embed[book])  # the codes before this step's update
            keep = None if active is None else active[:, level]
            err = (residual - q).pow(2)
            if keep is None:
                commitment = commitment + err.mean()
                quantized = quantized + q
            else:
                weight = keep.to(rows.dtype).unsqueeze(1)
                commitment = commitment + (err * weight).sum() / (weight.sum() * rows.shape[1]).clamp(min=1)
                quantized = quantized + q * weight
            if self.training:
                used_rows = residual.detach() if keep is None else residual.detach()[keep]
                used_idx = idx if keep is None else idx[keep]
                if o.shared_codebook:
                    level_inputs.append((used_rows, used_idx))
                else:  # levels are independent: update this one now (vector-quantize-pytorch's order)
                    self._collect_or_update(book, used_rows.float(), used_idx)
            indices.append(idx + book * self.level_size)
            residual = residual - q
        if self.training and o.shared_codebook and level_inputs:
            self._collect_or_update(0, torch.cat([r for r, _ in level_inputs]).float(),
                                    torch.cat([i for _, i in level_inputs]))
        if init:
            self.initted.fill_(True)
        z_q = quantized_output(z, unflatten_latent(quantized, z), o.rotation_trick, self.training)
        b, _, h, w = z.shape
        loss = o.beta * commitment
        return QuantOut(z_q, torch.stack(indices, dim=1).view(b, h, w, self.levels), loss,
                        {"commitment": commitment.detach()})

    @torch.no_grad()
    def _kmeans_init_(self, book: int, rows: Tensor) -> None:
        means, counts = kmeans(rows, self.level_size, self.options.kmeans_iters)
        counts = counts.clamp(min=1)  # an empty cluster keeps its seed with a count of one, as vqgan-ema
        self.cluster_size[book] = counts
        self.embed_avg[book] = means * counts.unsqueeze(1)
        refresh_ema_codes_(self.embed[book], self.embed_avg[book], self.cluster_size[book], self.options.eps)

    def _collect_or_update(self, book: int, rows: Tensor, idx: Tensor) -> None:
        """Between begin_step and end_step keep a micro-batch's assignments for the step's update; outside
        (a forward pass in training mode without the trainer's brackets) update at once."""
        if self._pending is not None:
            self._pending.append((book, rows, idx))
        else:
            self._update_(book, rows, idx)

    def begin_step(self) -> None:
        """From here to `end_step`, training forward passes collect their assignments; every micro-batch
        of the step is quantized against the same codes, as on data-parallel workers."""
        self._pending = []

    def end_step(self) -> None:
        """One EMA step (and dead-code replacement) per codebook from every micro-batch since
        `begin_step`: counts and sums per micro-batch added in order, then over the workers (the order
        the workers' all-reduce adds in), candidate rows in micro-batch order."""
        pending, self._pending = self._pending, None
        for book in sorted({b for b, _, _ in pending or ()}):
            parts = [(rows, idx) for b, rows, idx in pending if b == book]
            counts, sums = _counts_and_sums(*parts[0], self.level_size, collective=False)
            for rows, idx in parts[1:]:
                c, m = _counts_and_sums(rows, idx, self.level_size, collective=False)
                counts, sums = counts + c, sums + m
            stats = distributed.all_reduce_sum_(torch.cat([counts.unsqueeze(1), sums], dim=1))
            self._update_(book, torch.cat([r for r, _ in parts]), torch.cat([i for _, i in parts]),
                          stats=(stats[:, 0], stats[:, 1:]))

    @torch.no_grad()
    def _update_(self, book: int, rows: Tensor, idx: Tensor, stats: tuple[Tensor, Tensor] | None = None) -> None:
        """The EMA step of one codebook from these rows' counts and sums over all workers (`stats`, when
        the caller summed them already), then dead-code replacement."""
        o = self.options
        if rows.shape[0] == 0 and stats is None:
            return
        counts, sums = stats if stats is not None else _counts_and_sums(rows, idx, self.level_size)
        self.cluster_size[book].mul_(o.decay).add_(counts, alpha=1 - o.decay)
        self.embed_avg[book].mul_(o.decay).add_(sums, alpha=1 - o.decay)
        refresh_ema_codes_(self.embed[book], self.embed_avg[book], self.cluster_size[book], o.eps)
        if o.threshold_ema_dead_code > 0:
            replaced = dead_code_replacements(self.cluster_size[book], o.threshold_ema_dead_code, rows)
            if replaced is not None:
                code_idx, vectors = replaced
                self.embed[book, code_idx] = vectors
                self.cluster_size[book, code_idx] = o.threshold_ema_dead_code
                self.embed_avg[book, code_idx] = vectors * o.threshold_ema_dead_code

    def decode_indices(self, indices: Tensor) -> Tensor:
        b, h, w, levels = indices.shape
        flat = indices.reshape(-1, levels)
        quantized = torch.zeros(flat.shape[0], self.latent_channels, dtype=self.embed.dtype, device=self.embed.device)
        for level in range(levels):
            book = self._book(level)
            quantized = quantized + F.embedding(flat[:, level] - book * self.level_size, self.embed[book])
        return quantized.view(b, h, w, -1).permute(0, 3, 1, 2).contiguous()
