"""iFSQ: FSQ with a distribution-matching activation in place of its tanh bound.

iFSQ: Improving FSQ for Image Generation with 1 Line of Code (Lin, Li, Niu et al., 2026),
https://arxiv.org/abs/2601.17124; official code github.com/Tencent-Hunyuan/iFSQ (read at e78bd70:
ifsq/src/model/modules/fsq.py, `GroupFSQ.simple_bound` with `act_fun="scale_sigmoid_16"`).

FSQ bounds channel i with tanh(z) * (L_i - 1) / 2 before rounding. The bins of that grid are equally
wide, but tanh of a roughly Gaussian latent is not uniform: it piles up at the outer levels and
starves the middle ones (the paper's "activation collapse"). iFSQ replaces tanh by
f(x) = 2 sigmoid(1.6 x) - 1, whose output is close to uniform on (-1, 1) for x ~ N(0, 1) (sigmoid(1.6 x)
is a close approximation of the normal CDF), so equally wide bins are used about equally.

Since 2 sigmoid(2u) - 1 = tanh(u) exactly, f(x) = tanh(0.8 x): iFSQ is FSQ's bound applied to
(`sigmoid_scale` / 2) z, which is how it is computed here, by FSQQuantizer's own bound, rounding, index
and decoding (this class only changes the bound's input and its eps). tanh(0.8 x) is the better
conditioned form of the same number (2 sigmoid(.) - 1 cancels near 0); the two differ by float
rounding only (tests/methods/test_ifsq.py).

Where this follows the official code, and where it extends it:
- Odd levels: the official bound is f(z) (L - 1) / 2 with no eps and no shift (it asserts every
  level odd: its configuration is 17 levels per channel, "4 bits"). With the default
  `bound_eps` = 0 this is exactly that.
- Even levels: refused by the official code; here they take FSQ's shift (Appendix A.1 of the FSQ
  paper) inside the activation, tanh(0.8 z + atanh(0.5 / half_l)), so that the K mapping of `fsq`
  (and K = 64 or 256, which have no odd factorisation) works. Bin usage is then less even than with
  odd levels (docs/methods.md gives the measured numbers).
- Level 2 is refused (`levels` >= 3): with eps 0 its shift is atanh(1), infinite.
- `sigmoid_scale` = 2 with `bound_eps` = 1e-3 is `fsq` exactly (tanh, FSQ's eps): the ablation.

K mapping, latent channels, indices and bits per position (log2 K = sum_i log2 L_i) are fsq's; the
`--bits-per-image` rule is the base one (one index of K per position), K being the product of levels.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from bench.core.option_ranges import POSITIVE, at_least, interval, option

from .fsq import FSQQuantizer
from .registry import register_method


@dataclass
class IFSQOptions:
    # Levels per latent channel; None derives them from K as fsq does. The paper uses odd levels
    # (17 per channel); even levels work with FSQ's shift (module docstring). At least 3: level 2
    # has no finite shift without FSQ's eps.
    levels: tuple[int, ...] | None = option(None, at_least(3))
    # a in f(x) = 2 sigmoid(a x) - 1: the paper's 1.6 maps N(0, 1) close to uniform on (-1, 1);
    # 2.0 is tanh, FSQ's activation.
    sigmoid_scale: float = option(1.6, POSITIVE)
    # FSQ's eps on the half width (L - 1)(1 + eps) / 2: 0 in the official iFSQ bound, 1e-3 in FSQ.
    bound_eps: float = option(0.0, interval(0, 0.1, "[)"))


@register_method("ifsq", "iFSQ: FSQ whose tanh bound is replaced by 2 sigmoid(1.6 z) - 1, uniform bins for a Gaussian latent")
class IFSQQuantizer(FSQQuantizer):
    """iFSQ (https://arxiv.org/abs/2601.17124): fsq with the distribution-matching activation."""

    Options = IFSQOptions
    method = "ifsq"

    def _bound(self, z: Tensor, eps: float = 0.0) -> Tensor:  # noqa: ARG002 - eps is the option's
        # 2 sigmoid(a z) - 1 = tanh(a z / 2): FSQ's bound of (a / 2) z, with iFSQ's eps.
        return super()._bound(z * (self.options.sigmoid_scale / 2), self.options.bound_eps)
