"""FSP: finite scalar perturbation, the codebook-free training of VP-VAE for an FSQ-style grid.

VP-VAE: Rethinking Vector Quantization via Adaptive Vector Perturbation (Zhai, Ding, Lin et al.,
2026), https://arxiv.org/abs/2602.17133; the authors' example code github.com/zhai-lw/vp-vae (read at
2ae367d: fsp/fsp.py, fsp/cdf_act.py, vp/l_utils.py). Only the paper's abstract could be read here;
the method below is taken from the authors' code, checked against vector-quantize-pytorch 1.32.0's
`FSP` (tests/methods/test_fsp.py), and every difference between the two is named.

VP-VAE's insight is that, seen from the network, quantisation is a perturbation of the latent; FSP
is its form when every latent channel is (about) uniform. Per channel i:
1. A CDF activation maps z to a = F(z) in (0, 1) (`act`: the CDF of a logistic with scale 1/2, i.e.
   (tanh(z) + 1) / 2, by default; also sigmoid, normal, Laplace, Cauchy).
2. (0, 1) is cut into L_i equal bins; the level is floor(a L_i) (a clamped just below 1) and the
   quantised value the bin's midpoint (level + 1/2) / L_i.
3. In training, instead of that midpoint, each element takes a + u with u ~ U(-1/(2 L_i), 1/(2 L_i)):
   uniform noise one bin wide, the quantisation error a uniform latent would have. It is a
   Metropolis-Hastings step towards a uniform target on (0, 1): a proposal outside (0, 1) is
   rejected and the element keeps a. The noise is centred on a, not confined to a's bin. With
   probability `quantize_rate` an element takes the (straight-through) midpoint instead (default 0:
   every element is perturbed). The gradient is the identity through a in every case.
4. The result is mapped back: (q - 1/2) / sqrt(1/12), which has unit variance for a uniform q
   (default), or F^-1(q) with a straight-through gradient to z (`inverse_act`).
In eval mode, step 3 is skipped: the output is the bin's midpoint mapped back, exactly what
`decode_indices` gives. Indices: sum_i level_i prod_{j<i} L_j, as fsq (this class reuses fsq's K
mapping, grid bookkeeping and mixed-radix digits); bits per position log2 K = sum_i log2 L_i, and the
`--bits-per-image` rule is the base one, K being the product of levels.

`vector_norm` adds the authors' moment regulariser on z over the batch (weighted squared distances of
the per-channel mean, variance, skewness and excess kurtosis from targets), e.g. "var_tanh": mean 0,
variance pi^2/12 = 0.8225, the variance of the logistic whose CDF the tanh activation is, so that
F(z) is near uniform. The authors' code defaults to "none", the peer to "var_tanh"; this follows
the authors. Its statistics are those of this worker's batch under data parallelism.

Differences from the peer (`FSP`): the default `vector_norm` (above); the quantisation runs in
float32 whatever the input dtype (under bf16 autocast the bin midpoints would round), and the
straight-through value is the midpoint exactly (the peer's a + (q - a) is q up to one rounding), so
eval outputs equal `decode_indices` bit for bit. Left out: the authors' normalisation layers before
the activation (batch_norm, var_norm, passive_norm; not in the peer either), and the peer's
projections (our latent has one channel per level, as fsq's).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from bench.core.errors import UserError
from bench.core.option_ranges import at_least, interval, option

from .base import QuantOut, flatten_latent, straight_through, unflatten_latent
from .fsq import FSQQuantizer
from .registry import register_method

_UNIFORM_STD = math.sqrt(1 / 12)  # standard deviation of U(0, 1): the default output has unit variance


def _tanh_cdf(z: Tensor) -> Tensor:
    return (torch.tanh(z) + 1.0) / 2.0


def _tanh_icdf(p: Tensor) -> Tensor:
    return torch.arctanh(p * 2.0 - 1.0)


def _normal_cdf(z: Tensor) -> Tensor:
    return (1.0 + torch.erf(z / math.sqrt(2.0))) / 2.0


def _normal_icdf(p: Tensor) -> Tensor:
    return torch.erfinv(2.0 * p - 1.0) * math.sqrt(2.0)


def _laplace_cdf(z: Tensor) -> Tensor:
    return 0.5 * (1.0 + torch.sign(z) * (1.0 - torch.exp(-torch.abs(z))))


def _laplace_icdf(p: Tensor) -> Tensor:
    return -torch.sign(p - 0.5) * torch.log(1.0 - 2.0 * torch.abs(p - 0.5))


def _cauchy_cdf(z: Tensor) -> Tensor:
    return torch.arctan(z) / torch.pi + 0.5


def _cauchy_icdf(p: Tensor) -> Tensor:
    return torch.tan((p - 0.5) * torch.pi)


# CDF activations (R -> (0, 1)) and their inverses. The arithmetic is written as the peer's, so that
# both compute the same floats.
ACTIVATIONS: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "tanh": (_tanh_cdf, _tanh_icdf),
    "sigmoid": (torch.sigmoid, torch.logit),
    "normal": (_normal_cdf, _normal_icdf),
    "laplace": (_laplace_cdf, _laplace_icdf),
    "cauchy": (_cauchy_cdf, _cauchy_icdf),
}

# vector_norm presets: (target, weight) of the batch mean, variance, skewness and excess kurtosis of
# each channel, as the authors' code and the peer define them. The var_* targets are the variances
# of the distribution whose CDF the activation is (logistic of scale 1/2 for tanh: pi^2/12; of
# scale 1 for sigmoid: pi^2/3; Laplace of scale 1: 2), so that the activated latent is near uniform.
VECTOR_NORMS: dict[str, tuple[tuple[float, float], ...]] = {
    "none": ((0.0, 0.0), (1.0, 0.0), (0.0, 0.0), (0.0, 0.0)),
    "var": ((0.0, 0.1), (1.0, 0.07), (0.0, 0.0), (0.0, 0.0)),
    "kurt": ((0.0, 0.1), (1.0, 0.07), (0.0, 0.06), (0.0, 0.05)),
    "var_tanh": ((0.0, 0.1), (0.8225, 0.07), (0.0, 0.0), (0.0, 0.0)),
    "var_sigmoid": ((0.0, 0.1), (3.29, 0.07), (0.0, 0.0), (0.0, 0.0)),
    "var_laplace": ((0.0, 0.1), (2.0, 0.07), (0.0, 0.0), (0.0, 0.0)),
}
_STD_FLOOR = 1e-8  # the standardisation's floor on the batch std, as the authors'


def moment_loss(rows: Tensor, preset: tuple[tuple[float, float], ...]) -> Tensor:
    """The weighted squared distances of each channel's batch mean, variance (unbiased), skewness and
    excess kurtosis from their targets, averaged over channels; rows (N, C)."""
    variance, mean = torch.var_mean(rows, dim=0, unbiased=True)
    standard = (rows - mean) / variance.sqrt().clamp_min(_STD_FLOOR)
    moments = (mean, variance, standard.pow(3).mean(0), standard.pow(4).mean(0) - 3.0)
    return sum(((m - target) ** 2).mean() * weight for m, (target, weight) in zip(moments, preset) if weight)


@dataclass
class FSPOptions:
    # Levels per latent channel; None derives them from K as fsq does. Any level >= 2: the bins of
    # (0, 1) are symmetric for even and odd L alike.
    levels: tuple[int, ...] | None = option(None, at_least(2))
    # The CDF activation: tanh (the authors' and the peer's default), sigmoid, normal, laplace, cauchy.
    act: str = "tanh"
    # Probability that a training element takes its bin's midpoint instead of the perturbation;
    # 0 (default, as the authors' and the peer's) perturbs every element, 1 is quantisation throughout.
    quantize_rate: float = option(0.0, interval(0, 1))
    # Map back with the inverse CDF (gradient straight through to z) instead of (q - 1/2) / sqrt(1/12).
    inverse_act: bool = False
    # The moment regulariser's preset: none (the authors' default), var, kurt, var_tanh (the peer's
    # default), var_sigmoid, var_laplace.
    vector_norm: str = "none"


@register_method("fsp", "FSP (VP-VAE): CDF activation into (0, 1) bins; training perturbs by one bin's uniform noise instead of rounding")
class FSPQuantizer(FSQQuantizer):
    """Finite scalar perturbation (https://arxiv.org/abs/2602.17133) on fsq's implicit grid."""

    Options = FSPOptions
    method = "fsp"

    @classmethod
    def check(cls, codebook_size: int, dim: int, options: FSPOptions) -> None:
        if options.act not in ACTIVATIONS:
            raise UserError(f"fsp: act must be one of {', '.join(ACTIVATIONS)}, got {options.act!r}")
        if options.vector_norm not in VECTOR_NORMS:
            raise UserError(f"fsp: vector_norm must be one of {', '.join(VECTOR_NORMS)}, got {options.vector_norm!r}")
        super().check(codebook_size, dim, options)

    def __init__(self, codebook_size: int, dim: int, options: FSPOptions) -> None:
        self.check(codebook_size, dim, options)
        super().__init__(codebook_size, dim, options)
        self.cdf, self.inverse_cdf = ACTIVATIONS[options.act]
        self.moments = VECTOR_NORMS[options.vector_norm]

    def _map_back(self, q: Tensor, rows: Tensor | None, eps: float) -> Tensor:
        """Bin values q in (0, 1) back to the latent's scale; `rows` (the input, or None when decoding)
        takes the gradient where the inverse CDF is used."""
        if not self.options.inverse_act:
            return (q - 0.5) / _UNIFORM_STD
        back = self.inverse_cdf(q.clamp(eps, 1.0 - eps))
        return back if rows is None else straight_through(rows, back)

    def forward(self, z: Tensor) -> QuantOut:
        rows = flatten_latent(z).float()
        eps = torch.finfo(rows.dtype).eps
        levels = self._levels.to(rows.dtype)
        activated = self.cdf(rows)
        level = (activated.clamp_max(1.0 - eps) * levels).floor()
        q = straight_through(activated, (level + 0.5) / levels)
        logs: dict[str, Tensor] = {}
        if self.training and self.options.quantize_rate < 1.0:
            # Draw order and shapes as the peer's (noise, then the mask), so one seed gives both the same.
            half_bin = 1.0 / (levels * 2)
            proposal = activated + half_bin * (torch.rand_like(activated) * 2.0 - 1.0)
            accepted = (proposal > 0.0) & (proposal < 1.0)
            perturbed = torch.where(accepted, proposal, activated)
            q = torch.where(torch.rand_like(q) > self.options.quantize_rate, perturbed, q)
            logs["accept_rate"] = accepted.float().mean().detach()
        loss = z.new_zeros((), dtype=torch.float32)
        if self.options.vector_norm != "none":
            loss = moment_loss(rows, self.moments)
            logs["moment_loss"] = loss.detach()
        idx = (level.long() * self._basis).sum(-1)
        z_q = unflatten_latent(self._map_back(q, rows, eps), z)
        return QuantOut(z_q, idx.view(z.shape[0], z.shape[2], z.shape[3]), loss, logs)

    def decode_indices(self, indices: Tensor) -> Tensor:
        levels = self._levels.float()
        q = (self._level_digits(indices).float() + 0.5) / levels
        codes = self._map_back(q, None, torch.finfo(torch.float32).eps)
        return codes.permute(0, 3, 1, 2).contiguous()
