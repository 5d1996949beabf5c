"""The perceptual network of the training loss, resolved in a fixed order and recorded by name.

Order: standard LPIPS-VGG (`lpips`, when torchvision's VGG16 ImageNet weights are in the torch hub
cache), else shift-tolerant LPIPS-VGG (`stlpips-pytorch`, ships its weights), else none. The name of
the network that ran goes into the run record, so losses are never compared across networks blindly.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import torch
from torch import nn

VGG16_FILE = "vgg16-397923af.pth"  # torchvision's ImageNet VGG16 weights, as lpips loads them


def _hub_checkpoint(filename: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def load_perceptual(device: torch.device) -> tuple[nn.Module | None, str]:
    """(network mapping two [-1, 1] batches to per-image distances (N,1,1,1), its name) or (None, "none")."""
    if _hub_checkpoint(VGG16_FILE).exists():
        with contextlib.suppress(Exception), contextlib.redirect_stdout(io.StringIO()):
            import lpips

            net = lpips.LPIPS(net="vgg", verbose=False)
            return _frozen(net, device), "lpips-vgg"
    with contextlib.suppress(Exception), contextlib.redirect_stdout(io.StringIO()):
        from stlpips_pytorch import stlpips

        net = stlpips.LPIPS(net="vgg", variant="shift_tolerant")
        return _frozen(net, device), "st-lpips-vgg"
    return None, "none"


def _frozen(net: nn.Module, device: torch.device) -> nn.Module:
    net = net.to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net

