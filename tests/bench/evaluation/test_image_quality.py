"""PSNR and SSIM agree with scikit-image on the same images."""
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from bench.evaluation.metrics import image_quality


def _pair(n=5, size=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    noise = torch.randint(-40, 41, a.shape, generator=g)
    b = (a.int() + noise).clamp(0, 255).to(torch.uint8)
    return a, b


def _hwc(x):
    return x.permute(1, 2, 0).numpy()


def test_psnr_matches_skimage():
    a, b = _pair()
    ours = image_quality.psnr(a, b)
    ref = [peak_signal_noise_ratio(_hwc(x), _hwc(y), data_range=255) for x, y in zip(a, b)]
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-3, rtol=0)


@pytest.mark.parametrize("size", [11, 24, 37])
def test_ssim_matches_skimage(size):
    a, b = _pair(size=size, seed=size)
    ours = image_quality.ssim(a, b)
    ref = [
        structural_similarity(_hwc(x), _hwc(y), gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                              data_range=255, channel_axis=2)
        for x, y in zip(a, b)
    ]
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-4, rtol=0)


def test_ssim_of_identical_images_is_one_and_psnr_infinite():
    a, _ = _pair()
    assert torch.allclose(image_quality.ssim(a, a), torch.ones(len(a), dtype=torch.float64))
    assert torch.isinf(image_quality.psnr(a, a)).all()


def test_float_inputs_are_refused():
    a, b = _pair()
    with pytest.raises(TypeError, match="uint8"):
        image_quality.psnr(a.float(), b.float())


def test_to_uint8_boundary_rounds_and_clamps():
    from bench.core.images import to_float, to_uint8

    x = torch.tensor([-2.0, -1.0, 0.0, 0.999, 1.0, 3.0])
    assert to_uint8(x).tolist() == [0, 0, 128, 255, 255, 255]
    img = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(to_uint8(to_float(img)), img)
