"""Reflection padding whose backward is deterministic on CUDA.

nn.ReflectionPad2d's CUDA backward adds into the edge pixels with atomic adds, and torch has no
deterministic kernel for it (under `use_deterministic_algorithms(True, warn_only=True)` it only
warns). ST-LPIPS, the perceptual network of the training loss when standard LPIPS weights are not
available, pads by reflection in every blur-pool; in the deterministic mode (bench/training/
determinism.py) its pads are replaced by index selections, whose backward (index_add) torch makes
deterministic in that mode. Forward values are the same copies of the same pixels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _reflected(n: int, before: int, after: int, device: torch.device) -> Tensor:
    """Indices of a length-n axis padded by reflection (the edge itself not repeated)."""
    i = torch.arange(-before, n + after, device=device).abs()
    return torch.where(i >= n, 2 * (n - 1) - i, i)


class IndexReflectionPad2d(nn.Module):
    """nn.ReflectionPad2d as two index selections: the same values, and a backward (index_add)
    that is deterministic on CUDA in the deterministic mode, which reflection_pad2d's is not."""

    def __init__(self, padding: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.padding = tuple(padding)  # left, right, top, bottom, as nn.ReflectionPad2d stores it

    def forward(self, x: Tensor) -> Tensor:
        left, right, top, bottom = self.padding
        if max(left, right) >= x.shape[-1] or max(top, bottom) >= x.shape[-2]:
            return F.pad(x, self.padding, mode="reflect")  # raises the error reflection padding raises
        rows = _reflected(x.shape[-2], top, bottom, x.device)
        cols = _reflected(x.shape[-1], left, right, x.device)
        return x.index_select(-2, rows).index_select(-1, cols)


def deterministic_padding(module: nn.Module) -> int:
    """Replace every nn.ReflectionPad2d inside `module` by IndexReflectionPad2d, in place (no weights
    change, so state dicts are unchanged); returns how many were replaced."""
    replaced = 0
    for parent in module.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReflectionPad2d):
                setattr(parent, name, IndexReflectionPad2d(child.padding))
                replaced += 1
    return replaced
