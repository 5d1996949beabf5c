"""The networks whose weight values do not change a timing (the training loss's LPIPS-VGG, the LPIPS
metric's AlexNet, FID's Inception-v3), each loaded as a run loads it and, where its weights are not on
this machine (the GPU machines have no network and no copy of the ST-LPIPS package or the torchvision
backbones), built with random weights instead: the same architecture and arithmetic, so the same time.
Every such network's name says RANDOM, and the rows that use it carry that name.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch
from torch import nn

RANDOM = "random weights"


def random_lpips(net: str) -> nn.Module:
    """LPIPS with a randomly initialised backbone (`pnet_rand`: torchvision builds it without a download),
    from the `lpips` package (its linear heads ship in the wheel) or else the shift-tolerant package."""
    from bench.evaluation.metrics import lpips as metric

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision: "arguments other than a weight enum are deprecated"
        try:
            import lpips

            module = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
        except ImportError:
            module = metric._import_stlpips().LPIPS(net=net, variant="shift_tolerant", pretrained=False,
                                                     pnet_rand=True, verbose=False)
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def training_perceptual(learner: object, device: torch.device) -> str:
    """The perceptual network a TrainStep timed here runs: its own, or (where load_perceptual found none
    and the preset has a perceptual term) LPIPS-VGG with random weights put in its place. Its name;
    where neither LPIPS package is installed, the step runs without the term and the name says so."""
    if learner.perceptual is None and learner.t.perceptual_weight != 0:  # type: ignore[attr-defined]
        try:
            learner.perceptual = random_lpips("vgg").to(device)  # type: ignore[attr-defined]
        except ImportError:
            return "none (no LPIPS package here: the step lacks its perceptual term)"
        learner.perceptual_name = f"lpips-vgg ({RANDOM})"  # type: ignore[attr-defined]
    return learner.perceptual_name  # type: ignore[attr-defined]


def lpips_metric(device: torch.device):  # -> bench.evaluation.metrics.lpips.PerceptualNet
    """The LPIPS metric's network as an evaluation loads it, else AlexNet LPIPS with random weights."""
    from bench.evaluation.metrics import lpips

    try:
        return lpips.get_network("alex", device)
    except (ImportError, OSError, RuntimeError, ValueError):
        return lpips.PerceptualNet(random_lpips("alex").to(device), f"lpips-alex ({RANDOM})", "alex")


def inception(device: torch.device):  # -> bench.evaluation.metrics.fid.Extractor
    """FID's feature extractor as an evaluation loads it, else the same network (torch-fidelity's
    architecture, batch norms folded as the evaluator runs it) with random weights."""
    from bench.evaluation.metrics import fid, fid_fused, fid_weights

    try:
        return fid.get_extractor(device)
    except (ImportError, OSError, RuntimeError, ValueError):
        model = fid_fused.fuse(fid_weights.torch_fidelity_skeleton()).eval().to(device)
        if device.type == "cpu":
            model = model.to(memory_format=torch.channels_last)  # as fid.get_extractor does on the CPU
        return fid.Extractor(model, fid_weights.InceptionWeights(Path(RANDOM), RANDOM, {}), device, fid_fused.TAG)
