"""The FID Inception in inference form: every conv + batch norm + ReLU (torch-fidelity's `BasicConv2d`,
94 of them) becomes one convolution with the batch norm folded into its weights and bias, and on the
CPU the ReLU runs inside oneDNN's convolution (`mkldnn::_convolution_pointwise`, the op that
torch.compile's CPU backend emits for the same pattern) instead of as two more passes over memory.

The features equal the unfused network's to float rounding (folding reassociates one multiply-add
per output), not bit for bit; tests/bench/evaluation/test_fid_fused.py holds them to 1e-5 relative.
Measurements: docs/performance.md, "Inception throughput"; `python -m bench.speed.inception`.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

# Bump when the fused computation changes: it is part of the reference-statistics cache key, so a
# cached reference and fresh reconstruction features always come from the same arithmetic.
FUSED_VERSION = 1
TAG = f"fused{FUSED_VERSION}"


@functools.cache
def pointwise_op():  # noqa: ANN201 - a torch op overload
    """oneDNN's convolution with a fused activation, or None in a build without it. Looked up here,
    not kept on the modules, so that the model stays picklable."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._convolution_pointwise.default
    except (AttributeError, RuntimeError):
        return None


class ConvReLU(nn.Module):
    """relu(batch_norm(conv(x))) of an eval-mode BasicConv2d as one convolution with a bias. The
    convolution stays an nn.Conv2d, so `.to(device)` and `.to(memory_format=...)` work as before."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"cannot fuse a convolution with padding {conv.padding!r} ({conv.padding_mode})")
        self.conv = fuse_conv_bn_eval(conv.eval(), bn.eval())
        self.fused_relu = pointwise_op() is not None  # False: conv, then ReLU (the path on CUDA too)

    def forward(self, x: Tensor) -> Tensor:
        c = self.conv
        # oneDNN's fused op is for float32 CPU inference only; anything else takes the plain path.
        if (self.fused_relu and x.device.type == "cpu" and x.dtype == torch.float32
                and c.weight.dtype == torch.float32 and not torch.is_grad_enabled()):
            return pointwise_op()(x, c.weight, c.bias, list(c.padding), list(c.stride), list(c.dilation), c.groups,
                                  "relu", [], "")
        return F.relu(c(x), inplace=True)


def fuse(model: nn.Module) -> nn.Module:
    """`model` (an eval-mode torch-fidelity Inception) with every BasicConv2d replaced by a ConvReLU,
    in place. Returns the model; raises if a block does not have the conv/bn shape it expects."""
    targets = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
               if isinstance(getattr(child, "conv", None), nn.Conv2d)
               and isinstance(getattr(child, "bn", None), nn.BatchNorm2d)]
    if not targets:
        raise ValueError("no conv + batch norm blocks to fuse: not torch-fidelity's Inception")
    for parent, name, child in targets:
        setattr(parent, name, ConvReLU(child.conv, child.bn))
    return model
