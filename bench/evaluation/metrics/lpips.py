"""LPIPS for the evaluation protocol, and the perceptual networks of the training loss, offline.

Resolution order (the same for AlexNet, used by the metric, and VGG, used by the training loss):
1. Standard LPIPS v0.1 (`lpips` 0.1.4) when torchvision's ImageNet backbone file is already in the
   torch hub cache (`$TORCH_HOME/hub/checkpoints/`): it ships only its linear heads, and no package
   registry ships the backbone, so offline it works only where it ran online once. Recorded as
   "lpips-alex" under the metric key `lpips`.
2. Otherwise shift-tolerant LPIPS (`stlpips-pytorch` 0.0.2, variant "shift_tolerant"), which ships
   its whole network. Its numbers are NOT comparable with published LPIPS: recorded as
   "st-lpips-alex" under its own key `st_lpips`, never as `lpips` (which then stays None).

Inputs are uint8 (N, 3, H, W) images, mapped to [-1, 1] as x / 127.5 - 1 (lpips' `im2tensor`).
Per-image distances are averaged over images (the spatial average is inside the networks).
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import io
import sys
import types
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bench.evaluation.metrics import keys
from bench.evaluation.metrics.registry import LOWER, PER_IMAGE, EvalContext, Metric, Prepared, register_metric

BACKBONE_FILES = {  # torchvision's ImageNet weights, as lpips loads them through torch.hub
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
}
ST_WEIGHTS = "weights/vST0.0/{net}_shift_tolerant.pth"  # inside the stlpips_pytorch package
BATCH_SIZE = 64


@dataclass
class PerceptualNet:
    """A loaded LPIPS network and what it is."""

    module: nn.Module  # maps two [-1, 1] batches to per-image distances (N, 1, 1, 1)
    name: str  # "lpips-alex" | "st-lpips-alex" | "lpips-vgg" | "st-lpips-vgg"
    backbone: str  # "alex" | "vgg"

    @property
    def standard(self) -> bool:
        return not self.name.startswith("st-")

    @property
    def key(self) -> str:
        """The record's metric key: `lpips` only for standard LPIPS."""
        return keys.LPIPS if self.standard else keys.ST_LPIPS

    def describe(self) -> dict[str, Any]:
        if self.standard:
            detail = {"package": "lpips 0.1.4", "version": "0.1",
                      "backbone_weights": f"torchvision ImageNet {BACKBONE_FILES[self.backbone]} (torch hub cache)",
                      "comparable_with_published": True}
        else:
            detail = {"package": "stlpips-pytorch 0.0.2", "variant": "shift_tolerant",
                      "weights": ST_WEIGHTS.format(net=self.backbone),
                      "comparable_with_published": False,
                      "why": f"torchvision's {BACKBONE_FILES[self.backbone]} is not in the torch hub cache "
                             f"({hub_checkpoint('')}), so standard LPIPS cannot run offline"}
        return {"name": self.name, "key": self.key, "net": self.backbone,
                "input": "uint8 -> x/127.5 - 1, per-image spatial mean, mean over images", **detail}


def hub_checkpoint(filename: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def standard_available(net: str = "alex") -> bool:
    return hub_checkpoint(BACKBONE_FILES[net]).is_file()


def _import_stlpips() -> types.ModuleType:
    """stlpips_pytorch.stlpips. It imports IPython (for `embed`) and torchsummary at load time and
    uses neither. Where they are not installed, empty stand-ins are put into sys.modules for the
    import only and taken out again before this returns: a stand-in left behind breaks matplotlib
    and Ray, which look IPython up in sys.modules and read attributes it does not have."""
    if "stlpips_pytorch.stlpips" in sys.modules:
        return sys.modules["stlpips_pytorch.stlpips"]
    added: dict[str, object] = {}  # name -> what sys.modules held before (absent: _ABSENT)
    try:
        for _ in range(len(_STAND_INS) + 1):
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    return importlib.import_module("stlpips_pytorch.stlpips")
            except ModuleNotFoundError as exc:
                if exc.name not in _STAND_INS or exc.name in added:
                    raise
                added[exc.name] = sys.modules.get(exc.name, _ABSENT)
                sys.modules[exc.name] = _STAND_INS[exc.name]()
        raise ImportError("stlpips_pytorch could not be imported")  # pragma: no cover - loop always returns
    finally:
        for name, before in added.items():
            if before is _ABSENT:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = before  # type: ignore[assignment]


_ABSENT = object()


def _stand_in(name: str, **attrs: object):
    def make() -> types.ModuleType:
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        return module

    return make


_STAND_INS = {
    "IPython": _stand_in("IPython", embed=lambda *a, **k: None),
    "torchsummary": _stand_in("torchsummary", summary=lambda *a, **k: None),
}


def _load_standard(net: str) -> nn.Module:
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchvision's "pretrained is deprecated"
        import lpips

        module = lpips.LPIPS(net=net, version="0.1", verbose=False)
    # lpips loads its linear heads with strict=False: check they came from its file (the backbone
    # came from torchvision, strictly).
    path = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
    _check_loaded(module, torch.load(path, map_location="cpu"), path, skip_prefix="net.")
    return module


def _check_loaded(module: nn.Module, state: dict, path: Path, skip_prefix: str = "") -> None:
    params = dict(module.named_parameters())  # shared modules (lins = lin0..lin4) appear once
    params = {n: p for n, p in params.items() if not (skip_prefix and n.startswith(skip_prefix))}
    missing = [n for n in params if n not in state]
    differ = [n for n in params if n in state and not torch.equal(params[n].detach().cpu(), state[n])]
    if missing or differ:
        raise RuntimeError(f"LPIPS network did not load {path}: missing {missing[:3]}, differ {differ[:3]}")


def _load_shift_tolerant(net: str) -> nn.Module:
    stlpips = _import_stlpips()
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = stlpips.LPIPS(net=net, variant="shift_tolerant", verbose=False)
    # stlpips loads its file with strict=False: check that every parameter really came from it.
    path = Path(sys.modules["stlpips_pytorch"].__path__[0]) / ST_WEIGHTS.format(net=net)
    _check_loaded(module, torch.load(path, map_location="cpu"), path)
    return module


def load_network(net: str = "alex", device: torch.device | str = "cpu", prefer: str = "auto") -> PerceptualNet:
    """The LPIPS network for `net` by the resolution order above. `prefer`: "auto", "lpips" (fail if the
    standard network is unavailable) or "st-lpips" (always the shift-tolerant one)."""
    if net not in BACKBONE_FILES:
        raise ValueError(f"net must be one of {sorted(BACKBONE_FILES)}, got {net!r}")
    if prefer not in ("auto", "lpips", "st-lpips"):
        raise ValueError(f"prefer must be auto, lpips or st-lpips, got {prefer!r}")
    if prefer == "lpips" or (prefer == "auto" and standard_available(net)):
        if not standard_available(net):
            raise FileNotFoundError(f"standard LPIPS-{net} needs {hub_checkpoint(BACKBONE_FILES[net])} (torchvision "
                                    "ImageNet weights); offline, use the shift-tolerant network")
        module, name = _load_standard(net), f"lpips-{net}"
    else:
        module, name = _load_shift_tolerant(net), f"st-lpips-{net}"
    module = module.to(device).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return PerceptualNet(module, name, net)


_CACHE: dict[tuple[str, str, str], PerceptualNet] = {}


def get_network(net: str = "alex", device: torch.device | str = "cpu", prefer: str = "auto") -> PerceptualNet:
    """load_network, once per process (the metric is evaluated many times in one benchmark)."""
    key = (net, str(torch.device(device)), prefer)
    if key not in _CACHE:
        _CACHE[key] = load_network(net, device, prefer)
    return _CACHE[key]


_ACCEPTS: dict[tuple[str, tuple[int, int]], bool] = {}


@torch.no_grad()
def accepts(pn: PerceptualNet, size: tuple[int, int]) -> bool:
    """Whether the network runs on images of this size. AlexNet's stride-4 stem and pooling leave an
    empty map below about 31 px (standard) or 24 px (shift-tolerant); found by trying, once per size."""
    key = (pn.name, tuple(size))
    if key not in _ACCEPTS:
        dev = next(pn.module.parameters()).device
        x = torch.zeros(1, 3, *size, device=dev)
        try:
            pn.module(x, x)
            _ACCEPTS[key] = True
        except RuntimeError:
            _ACCEPTS[key] = False
    return _ACCEPTS[key]


def to_lpips_input(images: Tensor) -> Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise TypeError(f"LPIPS takes uint8 (N, 3, H, W) images, got {images.dtype} {tuple(images.shape)}")
    return images.float() / 127.5 - 1.0


@torch.no_grad()
def distances(a: Tensor, b: Tensor, batch_size: int = BATCH_SIZE, net: PerceptualNet | None = None,
              device: torch.device | str = "cpu") -> Tensor:
    """Per-image LPIPS (N,) float64 between two uint8 sets, in order."""
    if a.shape != b.shape:
        raise ValueError(f"LPIPS needs two sets of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    pn = net or get_network("alex", device)
    if len(a) and not accepts(pn, tuple(a.shape[-2:])):
        raise ValueError(f"{pn.name} does not accept images of {tuple(a.shape[-2:])} px (its pooling leaves nothing)")
    dev = next(pn.module.parameters()).device
    out = []
    for i in range(0, len(a), batch_size):
        x = to_lpips_input(a[i : i + batch_size]).to(dev)
        y = to_lpips_input(b[i : i + batch_size]).to(dev)
        out.append(pn.module(x, y).reshape(-1).double().cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def compute(a: Tensor, b: Tensor, batch_size: int = BATCH_SIZE, device: torch.device | str = "cpu",
            prefer: str = "auto") -> tuple[dict[str, float | None], dict[str, Any]]:
    """({lpips: mean or None, st_lpips: mean or None}, protocol entry). Exactly one of the two is set."""
    pn = get_network("alex", device, prefer)
    metrics: dict[str, float | None] = {keys.LPIPS: None, keys.ST_LPIPS: None}
    if not accepts(pn, tuple(a.shape[-2:])):
        return metrics, {**pn.describe(), "n_images": 0,
                         "skipped": f"{pn.name} does not accept {tuple(a.shape[-2:])} px images"}
    values = distances(a, b, batch_size, pn)
    metrics[pn.key] = float(values.mean())
    return metrics, {**pn.describe(), "n_images": len(values)}


def _setup(prefer: str):
    """A per-image setup for one of the two networks: loaded once per device, checked against the
    image size (AlexNet's pooling leaves nothing of very small images)."""

    def setup(ctx: EvalContext) -> Prepared:
        pn = get_network("alex", ctx.device, prefer)
        if not accepts(pn, ctx.image_size):
            return Prepared(None, pn.describe(), f"{pn.name} does not accept {tuple(ctx.image_size)} px images")
        return Prepared(functools.partial(distances, batch_size=ctx.batch_size, net=pn), pn.describe())

    return setup


def _standard_here(ctx: EvalContext) -> bool:
    return standard_available("alex")


# Exactly one of the two runs on a machine: standard LPIPS where its backbone is in the torch hub
# cache, the shift-tolerant network otherwise (see the module docstring). Both write protocol["lpips"].
register_metric(Metric(keys.LPIPS, "LPIPS", LOWER, 4, kind=PER_IMAGE, setup=_setup("lpips"), perceptual=True,
                       available=_standard_here, protocol_key="lpips",
                       description="LPIPS v0.1, AlexNet, mean over images"))
register_metric(Metric(keys.ST_LPIPS, "ST-LPIPS", LOWER, 4, kind=PER_IMAGE, setup=_setup("st-lpips"), perceptual=True,
                       available=lambda ctx: not _standard_here(ctx), protocol_key="lpips",
                       description="shift-tolerant LPIPS (stlpips-pytorch), AlexNet, mean over images; NOT comparable "
                                   "with published LPIPS"))
