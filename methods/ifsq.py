"""iFSQ: FSQ with a distribution-matching activation in place of its tanh bound.

iFSQ: Improving FSQ for Image Generation with 1 Line of Code (Lin, Li, Niu et al., 2026),
https://arxiv.org/abs/2601.17124; official code github.com/Tencent-Hunyuan/iFSQ (read at e78bd70:
ifsq/src/model/modules/fsq.py, `GroupFSQ.simple_bound` with `act_fun="scale_sigmoid_16"`, and the
released configuration ifsq/configs/ifsq_f16_d4_4bit/run.json: 17 levels per channel).

FSQ bounds channel i with tanh(z) before rounding to L_i equally spaced values. Those bins are
equally wide, but tanh of a roughly Gaussian latent is not uniform: it piles up at the outer levels
and starves the middle ones (the paper's "activation collapse"). iFSQ replaces tanh by
f(z) = 2 sigmoid(1.6 z) - 1, close to uniform on (-1, 1) for z ~ N(0, 1) (sigmoid(1.6 z) approximates
the normal CDF), so equally wide bins are used about equally. Since 2 sigmoid(2u) - 1 = tanh(u)
exactly, f(z) is computed as tanh(0.8 z), the better conditioned form of the same number (2 sigmoid - 1
cancels near 0; the two differ by float rounding, tests/methods/test_ifsq.py).

The bound, per level count:
- odd L (the paper's case): f(z) (L - 1) / 2, as the official `simple_bound` (no eps, no shift;
  the official code asserts every level odd). Rounding gives the L integers of [-(L-1)/2, (L-1)/2];
  the two outer ones get half a bin each of f's range.
- even L, refused by the official code: f(z) L / 2 - 1/2, so that rounding cuts (-1, 1) into L equal
  bins onto fsq's grid [-L/2, L/2 - 1]. This is vqbench's extension, so that fsq's K mapping (and
  K = 64 or 256, which have no odd factorisation) works; it keeps the method's property (measured
  in docs/methods.md). FSQ's own even-level shift, tanh(0.8 z + atanh(1 / (L - 1))), would not: with
  it a Gaussian latent used 8 levels 0.3x-1.5x evenly.
- f is held inside [-1 + eps, 1 - eps] (float eps), so that a saturated channel (tanh = +-1.0 in
  float) stays in the outer bin of an even L (L/2 - 1/2 and, for L/2 odd, -L/2 - 1/2 round off the
  grid: round half to even).
Rounding (straight-through), scaling to [-1, 1], the index, the K mapping and `decode_indices` are
fsq's (this class only replaces its `_bound`). Bits per position log2 K = sum_i log2 L_i; the
`--bits-per-image` rule is the base one (one index of K per position), K being the product of levels.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from bench.core.option_ranges import POSITIVE, at_least, option

from .fsq import FSQQuantizer
from .registry import register_method


@dataclass
class IFSQOptions:
    # Levels per latent channel; None derives them from K as fsq does. The paper uses odd levels
    # (17 per channel, "4 bits"); even levels are cut into L equal bins (module docstring).
    levels: tuple[int, ...] | None = option(None, at_least(2))
    # a in f(z) = 2 sigmoid(a z) - 1: the paper's 1.6 maps N(0, 1) close to uniform on (-1, 1);
    # 2.0 is tanh, FSQ's activation (the ablation).
    sigmoid_scale: float = option(1.6, POSITIVE)


@register_method("ifsq", "iFSQ: FSQ whose tanh bound is replaced by 2 sigmoid(1.6 z) - 1, uniform bins for a Gaussian latent")
class IFSQQuantizer(FSQQuantizer):
    """iFSQ (https://arxiv.org/abs/2601.17124): fsq with the distribution-matching activation."""

    Options = IFSQOptions
    method = "ifsq"

    def _bound(self, z: Tensor) -> Tensor:
        activated = torch.tanh(z * (self.options.sigmoid_scale / 2))  # = 2 sigmoid(a z) - 1
        eps = torch.finfo(z.dtype).eps
        activated = activated.clamp(-1.0 + eps, 1.0 - eps)
        levels = self._levels.to(z.dtype)
        odd = self._levels % 2 == 1
        half_range = torch.where(odd, (levels - 1) / 2, levels / 2)
        return activated * half_range - torch.where(odd, 0.0, 0.5).to(z.dtype)
