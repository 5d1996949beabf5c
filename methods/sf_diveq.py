"""SF-DiVeQ: space-filling DiVeQ, the latent quantised onto the curve through consecutive codewords.

DiVeQ: Differentiable Vector Quantization Using the Reparameterization Trick (Vali, Bäckström, Solin,
ICLR 2026), https://arxiv.org/abs/2509.26469, its space-filling variant; official code
github.com/AaltoML/DiVeQ (`sf_diveq.py`).

The K codewords, in index order, are the vertices of a polyline: segment s joins c_s and c_{s+1}
(K - 1 segments). Each training step draws one dither lambda_s ~ U(0, 1) per segment; the dithered
codebook d_s = (1 - lambda_s) c_s + lambda_s c_{s+1} holds one random point of each segment, and each
position takes its nearest d_s (the search is `nearest_codes` over the K - 1 points). z_q is that point
written with DiVeQ's error vectors towards both ends (methods/diveq.py, `directional_error`):

    z_q = z + (1 - lambda_s) ||c_s - z|| sg[u_1] + lambda_s ||c_{s+1} - z|| sg[u_2]

with u_1, u_2 the unit directions of (c_s - z) + n_1 and (c_{s+1} - z) + n_2, n ~ N(0, sigma^2 I).
Without noise its value is d_s; the gradient reaches z and both codewords of the segment, so every
codeword lies on some used segment and is pulled towards the data (the paper: no dead codes, no
replacement). No loss.

Warm-up, as the official code: for the first `skip_iters` - 1 training steps the latent passes
unquantised (z_q = z; indices 0), the last `avg_iters` of them are collected, and the codebook is
initialised to the means of K consecutive equal chunks of those latents (in the order they came), so
consecutive codewords start close to each other along the data. Only the running sums of the chunks
are kept (buffers), never the latents of past steps. Under data parallelism the latents of all workers
are gathered (rank order) each collected step and rank 0's dither is broadcast each quantised step, so
the workers bin, initialise and quantise as one process on the whole batch would.

Eval mode and indices (a departure, see docs/methods.md): the official inference projects z onto the
curve near its nearest codeword, a continuous point that no index can carry. vqbench's contract is a
finite-rate code that `decode_indices` reproduces exactly, so in eval mode a position is quantised to
its nearest codeword (the curve's vertices; what the official inference returns as indices), and z_q
is exactly that codeword. In training the index is the codeword nearer the chosen point along its
segment (s if lambda_s < 1/2, else s + 1). Bits per position: log2 K.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.core.errors import UserError
from bench.core.option_ranges import AT_LEAST_ONE, NON_NEGATIVE, option

from . import distributed
from .base import QuantOut, flatten_latent, nearest_codes, unflatten_latent
from .diveq import StepBracketedCodebook, directional_error, exact_with_gradient
from .registry import register_method


@dataclass
class SFDiVeQOptions:
    # Variance of the direction noise; the default is the official code's effective one (see diveq).
    noise_variance: float = option(1e-6, NON_NEGATIVE)
    # The official warm-up: quantisation starts at training step `skip_iters` (counted from 1), after
    # the codebook is initialised from the latents of the `avg_iters` steps before it. 0 or 1: no
    # warm-up, quantised from the first step with the initial codebook (uniform in [0, 1/K)).
    skip_iters: int = option(1000, NON_NEGATIVE)
    avg_iters: int = option(50, AT_LEAST_ONE)


def segment_points(codebook: Tensor, dither: Tensor) -> Tensor:
    """The dithered codebook (K - 1, D): point (1 - lambda_s) c_s + lambda_s c_{s+1} of each segment s,
    for dither (K - 1, 1)."""
    return (1 - dither) * codebook[:-1] + dither * codebook[1:]


@register_method("sf-diveq", "SF-DiVeQ: nearest point of a dithered curve through consecutive codes, DiVeQ gradients; eval: nearest code")
class SFDiVeQQuantizer(StepBracketedCodebook):
    """Space-filling DiVeQ (https://arxiv.org/abs/2509.26469)."""

    Options = SFDiVeQOptions

    bounded_memory = True

    @classmethod
    def check(cls, codebook_size: int, dim: int, options: SFDiVeQOptions) -> None:
        if codebook_size < 2:
            raise UserError(f"sf-diveq: the codebook needs at least 2 codes (one segment), got K={codebook_size}")
        if options.skip_iters >= 2 and options.avg_iters > options.skip_iters:
            raise UserError(f"sf-diveq: avg_iters ({options.avg_iters}) must not exceed skip_iters ({options.skip_iters}); "
                            f"lower avg_iters or raise skip_iters")

    def __init__(self, codebook_size: int, dim: int, options: SFDiVeQOptions) -> None:
        super().__init__()
        self.check(codebook_size, dim, options)
        self.options = options
        self.codebook_size = codebook_size
        self.latent_channels = dim
        self.codebook = nn.Parameter(torch.rand(codebook_size, dim) / codebook_size)  # official: U[0, 1/K)
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        # The warm-up's chunk sums and counts, rows collected so far and rows per chunk (0: not yet known).
        self.register_buffer("init_sums", torch.zeros(codebook_size, dim))
        self.register_buffer("init_counts", torch.zeros(codebook_size))
        self.register_buffer("init_seen", torch.zeros((), dtype=torch.long))
        self.register_buffer("init_hop", torch.zeros((), dtype=torch.long))
        self._pending: list[Tensor] = []  # this step's collected latents, binned at its end (never across steps)
        self._step_dither: Tensor | None = None  # the dither of the current bracketed step

    def warming_up(self) -> bool:
        """Whether the current training step (number steps_done + 1) passes the latent unquantised."""
        return int(self.steps_done) + 1 < self.options.skip_iters

    def forward(self, z: Tensor) -> QuantOut:
        b, _, h, w = z.shape
        rows = flatten_latent(z)
        zero = z.new_zeros(())
        if self.training and self.warming_up():
            if int(self.steps_done) + 1 >= self.options.skip_iters - self.options.avg_iters:
                self._pending.append(rows.detach().float())
            self._training_forward_done()
            return QuantOut(z, torch.zeros(b, h, w, dtype=torch.long, device=z.device), zero, {})
        if self.training:
            z_q, idx = self._quantise_on_curve(rows)
            self._training_forward_done()
        else:
            idx = nearest_codes(rows.detach(), self.codebook.detach())[:, 0]
            codes = F.embedding(idx, self.codebook)
            z_q = exact_with_gradient(codes, rows + directional_error(rows, codes, 0.0))
        return QuantOut(unflatten_latent(z_q, z), idx.view(b, h, w), zero, {})

    def _quantise_on_curve(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """Training: (z_q rows, indices) on this step's dithered curve. Draws, in the official order,
        the dither (torch.rand) and then the two noises (torch.randn_like each)."""
        # One curve per step for the whole batch, as the official code: rank 0's dither, sent to all workers,
        # drawn by the step's first micro-batch and kept for the others (so N workers equal N micro-batches).
        dither = self._step_dither
        if dither is None:
            dither = distributed.broadcast_(torch.rand(self.codebook_size - 1, 1, device=rows.device,
                                                       dtype=self.codebook.dtype))
            if self._bracketed:
                self._step_dither = dither
        with torch.no_grad():
            segment = nearest_codes(rows.detach(), segment_points(self.codebook.detach(), dither))[:, 0]
        lam = dither[segment]
        noise_std = math.sqrt(self.options.noise_variance)
        first, second = F.embedding(segment, self.codebook), F.embedding(segment + 1, self.codebook)
        z_q = (rows + (1 - lam) * directional_error(rows, first, noise_std)
               + lam * directional_error(rows, second, noise_std))
        return z_q, segment + (lam[:, 0] >= 0.5).long()

    @torch.no_grad()
    def _end_of_step_(self) -> None:
        self._step_dither = None  # the next step draws its own (set only inside a bracket)
        if self._pending:
            # Every worker bins all workers' latents (in rank order, as one batch of all would hold them), so
            # the chunk sums are the same everywhere and rank 0's checkpoint holds them.
            self._bin_(distributed.gather_rows(torch.cat(self._pending)))
            self._pending.clear()
        self.steps_done += 1
        if self.options.skip_iters >= 2 and int(self.steps_done) == self.options.skip_iters - 1:
            self._initialise_()

    def _bin_(self, rows: Tensor) -> None:
        """Add this step's latents to the chunk sums: row p (counted over all collected steps) goes to
        chunk p // hop, hop = floor(collected rows / K) with the collected rows estimated from the first
        collected step (as the official mean over consecutive chunks; rows past K chunks are left out)."""
        if int(self.init_hop) == 0:
            steps = min(self.options.avg_iters, self.options.skip_iters - 1)
            self.init_hop.fill_(max(1, steps * len(rows) // self.codebook_size))
        chunk = (int(self.init_seen) + torch.arange(len(rows), device=rows.device)) // int(self.init_hop)
        keep = chunk < self.codebook_size
        self.init_sums.index_add_(0, chunk[keep], rows[keep].to(self.init_sums.dtype))
        self.init_counts.index_add_(0, chunk[keep], torch.ones_like(chunk[keep], dtype=self.init_counts.dtype))
        self.init_seen += len(rows)

    def _initialise_(self) -> None:
        """Codebook = chunk means; a chunk that got no latent keeps its code."""
        counts = self.init_counts[:, None]
        means = self.init_sums / counts.clamp(min=1)
        self.codebook.data.copy_(torch.where(counts > 0, means, self.codebook.data).to(self.codebook.dtype))
