"""The FID Inception weights in half precision, for the GPU bundle.

The derived weights file (bench/evaluation/metrics/fid_weights.py) is 91 MiB of float32: with the
wheels it does not fit the 56 MiB the bundle may take. Stored as float16 it is 42 MiB, and the
evaluator loads it unchanged: torch-fidelity's `load_state_dict` copies each float16 tensor into its
float32 parameter, so the network runs in float32 with weights rounded to float16 (a relative
change of at most 2^-11 per weight). The classifier (`fc`) of the derived file is all NaN (the
TorchScript source has none); it is stored as one NaN expanded to the layer's shape, which
`torch.save` writes as a single element.

A half file is used only after its pool3 features were compared with the float32 file's on random
images: `verify` measures the largest difference relative to the largest feature, and the builder
refuses the file above `RELATIVE_TOL`.
"""
from __future__ import annotations

from pathlib import Path

import torch

RELATIVE_TOL = 5e-3  # max |f16 - f32| / max |f32| of pool3 features; weight rounding alone gives ~1e-3
VERIFY_IMAGES = 2


def to_half(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every floating tensor as float16; an all-NaN tensor as one expanded NaN; others unchanged."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not value.is_floating_point():
            out[key] = value
        elif value.numel() and bool(torch.isnan(value).all()):
            out[key] = torch.full((1,) * value.ndim, float("nan"), dtype=torch.float16).expand(value.shape)
        else:
            half = value.to(torch.float16)
            if not torch.isfinite(half).all() and torch.isfinite(value).all():
                raise ValueError(f"{key} overflows float16 (max |x| = {float(value.abs().max()):.3g})")
            out[key] = half
    return out


def save_half(source: Path, target: Path) -> None:
    """The float32 weights file `source`, stored as float16 at `target`."""
    state = torch.load(source, map_location="cpu", weights_only=True)
    torch.save(to_half(state), target)


def relative_feature_difference(full: Path, half: Path, n: int = VERIFY_IMAGES) -> float:
    """max |pool3(half) - pool3(full)| / max |pool3(full)| on n random 299x299 images, both networks
    built the way the evaluator builds them (bench.evaluation.metrics.fid_weights.load_extractor)."""
    from bench.evaluation.metrics.fid_weights import load_extractor, random_images

    images = random_images(n)
    with torch.no_grad():
        reference = load_extractor(full)(images)[0]
        rounded = load_extractor(half)(images)[0]
    return float((rounded - reference).abs().max() / reference.abs().max())
