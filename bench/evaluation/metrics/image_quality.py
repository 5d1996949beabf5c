"""PSNR and SSIM per image on uint8 RGB, matching scikit-image's definitions.

PSNR: 10 log10(255^2 / MSE) over all pixels and channels of one image (skimage
`peak_signal_noise_ratio(data_range=255)`). SSIM: Gaussian window sigma 1.5 truncated at 3.5 sigma
(11 taps), C1=(0.01*255)^2, C2=(0.03*255)^2, population covariances, mean over the valid region and
then over channels (skimage `structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=255, channel_axis=...)`). Computed in float64.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.evaluation.metrics import keys
from bench.evaluation.metrics.registry import HIGHER, PER_IMAGE, Metric, register_metric

DATA_RANGE = 255.0
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # scipy/skimage's gaussian_filter default: radius = int(3.5*1.5 + 0.5) = 5
K1, K2 = 0.01, 0.03


def _check(a: Tensor, b: Tensor) -> None:
    if a.dtype != torch.uint8 or b.dtype != torch.uint8:
        raise TypeError("image metrics take uint8 images: convert once at the evaluator's boundary")
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"expected two (N, C, H, W) batches of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def psnr(a: Tensor, b: Tensor) -> Tensor:
    """Per-image PSNR in dB, (N,) float64. Identical images give inf, as in scikit-image."""
    _check(a, b)
    mse = (a.double() - b.double()).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(DATA_RANGE**2 / mse)


@functools.lru_cache(maxsize=4)
def _gaussian_1d(device: str) -> Tensor:
    radius = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    g = torch.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    return g / g.sum()


def _blur(x: Tensor) -> Tensor:
    """Separable Gaussian filter, valid region only: exactly skimage's filtered map with its
    (win_size - 1) / 2 border cropped, whatever its padding mode."""
    g = _gaussian_1d(str(x.device))
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def ssim(a: Tensor, b: Tensor) -> Tensor:
    """Per-image SSIM, (N,) float64, averaged over channels."""
    _check(a, b)
    if min(a.shape[-2:]) < 2 * int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5) + 1:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels, got {tuple(a.shape[-2:])}")
    x, y = a.double(), b.double()
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    mx, my = _blur(x), _blur(y)
    vx = _blur(x * x) - mx * mx
    vy = _blur(y * y) - my * my
    cxy = _blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean(dim=(2, 3)).mean(1)


register_metric(Metric(keys.PSNR, "PSNR", HIGHER, 2, kind=PER_IMAGE, fn=psnr,
                       description="per image over RGB uint8, data range 255, mean over images"))
register_metric(Metric(keys.SSIM, "SSIM", HIGHER, 4, kind=PER_IMAGE, fn=ssim,
                       description="Gaussian window 11 (sigma 1.5), per channel then mean, mean over images"))
