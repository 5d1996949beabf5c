"""DiVeQ: differentiable vector quantisation by reparameterising the quantisation error along its direction.

DiVeQ: Differentiable Vector Quantization Using the Reparameterization Trick (Vali, Bäckström, Solin,
ICLR 2026), https://arxiv.org/abs/2509.26469; official code github.com/AaltoML/DiVeQ (`diveq.py`).

The assignment stays hard (each position's nearest code c), but instead of a straight-through copy
z_q is written as the input plus an error vector of the quantisation error's length along a noisy,
stop-gradient direction:

    z_q = z + ||c - z|| sg[v / ||v||],   v = (c - z) + n,   n ~ N(0, sigma^2 I)

Its value is c up to the noise in the direction; its gradient reaches z (through z and the length)
and the chosen code c (through the length), so the codebook learns from the reconstruction loss
alone: no codebook, commitment or auxiliary loss (the loss is zero). Noise is drawn only in training;
in eval mode z_q is exactly c (what `decode_indices` returns), with the noise-free DiVeQ gradient.

Dead codes: the paper's own remedy, as the official `_replace_unused_entries`: training steps are
counted in windows of `replacement_interval`; at the end of each window every code chosen less than
`discard_threshold` times per step on average is replaced by a used code, drawn with probability
proportional to its use in the window, plus `perturb_eps` Gaussian noise, and the counts restart.
Counts are summed over data-parallel workers every step; the replacement's draw is rank 0's, broadcast.

`directional_error` is shared with `sf-diveq` (methods/sf_diveq.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.core.option_ranges import AT_LEAST_ONE, NON_NEGATIVE, interval, option

from . import distributed
from .base import Quantizer, QuantOut, flatten_latent, nearest_codes, unflatten_latent
from .registry import register_method


def directional_error(rows: Tensor, target: Tensor, noise_std: float) -> Tensor:
    """DiVeQ's error vector for rows (N, D) and their targets (N, D): ||target - rows|| times the unit
    direction of (target - rows) + noise, the direction under stop-gradient. `noise_std` 0: no noise
    (and no random draw). The noise is one `torch.randn_like` of the rows, drawn from the global
    generator, as vector-quantize-pytorch's `directional_reparam` draws it."""
    error = target - rows
    direction = error.detach()
    if noise_std > 0:
        direction = direction + noise_std * torch.randn_like(direction)
    return error.norm(dim=1, keepdim=True) * F.normalize(direction, dim=1)


def exact_with_gradient(value: Tensor, surrogate: Tensor) -> Tensor:
    """`value` exactly, with the gradient of `surrogate` (same shape): value + (s - sg[s]), whose second
    term is exactly zero. Eval mode's z_q: the code itself, so `decode_indices` reproduces it bit for
    bit, still differentiable the DiVeQ way."""
    return value.detach() + (surrogate - surrogate.detach())


class StepBracketedCodebook(Quantizer):
    """A quantizer over `self.codebook` (K x dim) with work to do once per optimizer step
    (`_end_of_step_`): the trainer brackets a step's micro-batches with `begin_step`/`end_step`, and
    outside a bracket every training forward is a step of its own. diveq (usage counts, dead-code
    replacement) and sf-diveq (warm-up binning, one dither per step) share it."""

    _bracketed = False

    def decode_indices(self, indices: Tensor) -> Tensor:
        return F.embedding(indices, self.codebook).permute(0, 3, 1, 2).contiguous()

    def begin_step(self) -> None:
        self._bracketed = True

    def end_step(self) -> None:
        self._bracketed = False
        self._end_of_step_()

    def _training_forward_done(self) -> None:
        """Called at the end of every training forward: a step ends here unless the trainer brackets it."""
        if not self._bracketed:
            self._end_of_step_()

    def _end_of_step_(self) -> None:
        raise NotImplementedError


@dataclass
class DiVeQOptions:
    # Variance sigma^2 of the direction noise, as the paper writes it (and vector-quantize-pytorch's
    # `directional_reparam_variance`). The official code passes its `noise_var=0.001` to
    # torch.distributions.Normal as the scale, so its noise has standard deviation 1e-3: variance
    # 1e-6, the default here. 0: no noise.
    noise_variance: float = option(1e-6, NON_NEGATIVE)
    # Dead-code replacement, the official code's defaults: a window of 100 training steps, a code used
    # fewer than 0.01 times per step on average is replaced by a used code plus 1e-9 noise.
    replacement_interval: int = option(100, AT_LEAST_ONE)
    discard_threshold: float = option(0.01, interval(0, 1))  # 0: never replace
    perturb_eps: float = option(1e-9, NON_NEGATIVE)


@register_method("diveq", "DiVeQ: nearest code, z_q = z + |c - z| x noisy direction (gradient to encoder and codes), no loss")
class DiVeQQuantizer(StepBracketedCodebook):
    """DiVeQ (https://arxiv.org/abs/2509.26469)."""

    Options = DiVeQOptions

    bounded_memory = True

    def __init__(self, codebook_size: int, dim: int, options: DiVeQOptions) -> None:
        super().__init__()
        self.options = options
        self.codebook_size = codebook_size
        self.latent_channels = dim
        # The official initialisation: uniform in [0, 1/K).
        self.codebook = nn.Parameter(torch.rand(codebook_size, dim) / codebook_size)
        # Assignments in the current window (all workers') and training steps so far: buffers, so a
        # resumed run equals an uninterrupted one and rank 0's checkpoint holds every worker's counts.
        self.register_buffer("window_counts", torch.zeros(codebook_size))
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        self._step_counts = torch.zeros(codebook_size)  # this worker's assignments in the current step

    def forward(self, z: Tensor) -> QuantOut:
        rows = flatten_latent(z)
        idx = nearest_codes(rows.detach(), self.codebook.detach())[:, 0]
        codes = F.embedding(idx, self.codebook)
        if self.training:
            z_q = rows + directional_error(rows, codes, math.sqrt(self.options.noise_variance))
            with torch.no_grad():
                counts = torch.bincount(idx, minlength=self.codebook_size).to(self.window_counts.dtype)
                self._step_counts = self._step_counts.to(counts.device) + counts
            self._training_forward_done()
        else:
            z_q = exact_with_gradient(codes, rows + directional_error(rows, codes, 0.0))
        indices = idx.view(z.shape[0], z.shape[2], z.shape[3])
        return QuantOut(unflatten_latent(z_q, z), indices, z.new_zeros(()), {})

    @torch.no_grad()
    def _end_of_step_(self) -> None:
        # One small collective per step keeps the counts, like the codebook, the same on every worker.
        self.window_counts += distributed.all_reduce_sum_(self._step_counts.to(self.window_counts.device))
        self._step_counts = torch.zeros_like(self.window_counts)
        self.steps_done += 1
        if int(self.steps_done) % self.options.replacement_interval == 0:
            self._replace_unused_()

    @torch.no_grad()
    def _replace_unused_(self) -> None:
        """The official replacement over all workers' counts; the random draw is rank 0's, broadcast."""
        counts = self.window_counts.clone()
        self.window_counts.zero_()
        if self.options.discard_threshold <= 0:
            return
        used = counts / self.options.replacement_interval >= self.options.discard_threshold
        unused_idx, used_idx = (~used).nonzero()[:, 0], used.nonzero()[:, 0]
        if len(unused_idx) == 0 or len(used_idx) == 0:
            return
        drawn = used_idx[torch.multinomial(counts[used_idx], len(unused_idx), replacement=True)]
        new = self.codebook[drawn] + self.options.perturb_eps * torch.randn(len(drawn), self.codebook.shape[1],
                                                                             device=self.codebook.device)
        # .data: the step's autograd graph (built before the replacement when unbracketed) keeps its version.
        self.codebook.data[unused_idx] = distributed.broadcast_(new.contiguous())
