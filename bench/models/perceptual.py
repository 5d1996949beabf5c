"""The perceptual network of the training loss, resolved in a fixed order and recorded by name.

Order (shared with the LPIPS metric, see bench/metrics/lpips.py): standard LPIPS-VGG (`lpips`, when
torchvision's VGG16 ImageNet weights are in the torch hub cache), else shift-tolerant LPIPS-VGG
(`stlpips-pytorch`, ships its weights), else none (only when neither package can be imported, with a
warning). The name of the network that ran goes into the run record, so losses are never compared
across networks blindly.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from bench.evaluation.metrics.lpips import BACKBONE_FILES, load_network
from bench.models.reflection_pad import deterministic_padding

VGG16_FILE = BACKBONE_FILES["vgg"]  # torchvision's ImageNet VGG16 weights, as lpips loads them


def load_perceptual(device: torch.device) -> tuple[nn.Module | None, str]:
    """(network mapping two [-1, 1] batches to per-image distances (N,1,1,1), its name) or (None, "none").
    The name is "lpips-vgg" or "st-lpips-vgg"."""
    try:
        pn = load_network("vgg", device)
    except (ImportError, FileNotFoundError) as exc:
        warnings.warn(f"no perceptual network (training without the perceptual term): {exc}", stacklevel=2)
        return None, "none"
    if torch.device(device).type == "cuda" and torch.are_deterministic_algorithms_enabled():
        deterministic_padding(pn.module)  # ST-LPIPS pads by reflection, whose CUDA backward is not deterministic
    return pn.module, pn.name
