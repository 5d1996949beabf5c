"""The one boundary between images and the model: uint8 [0, 255] in, floats in [-1, 1] inside, and
back to uint8 exactly once (clamp, scale, round) before any metric reads a reconstruction."""
from __future__ import annotations

import torch
from torch import Tensor


def to_float(images: Tensor) -> Tensor:
    """uint8 [0, 255] -> float [-1, 1], the model's input range."""
    return images.float().div(127.5).sub(1.0)


def to_uint8(images: Tensor) -> Tensor:
    """float [-1, 1] -> uint8 [0, 255]: clamp, scale, round. The one boundary before every metric."""
    return images.detach().float().clamp(-1.0, 1.0).add(1.0).mul(127.5).round().to(torch.uint8)
