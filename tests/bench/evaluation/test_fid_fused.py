"""The evaluator's fused Inception (batch norms folded, ReLUs fused) gives torch-fidelity's features to
float rounding and the same rFID, on a few real images (about 10 s on 2 CPU cores)."""
import numpy as np
import pytest
import torch
from torch import nn

from bench.evaluation.metrics import fid, fid_fused, fid_weights

from .metric_images import blur, tiles


@pytest.fixture(scope="module")
def extractor():
    return fid.get_extractor()


@pytest.fixture(scope="module")
def images():
    x = tiles(3)
    return torch.cat([x, blur(x, 1.0)])  # 3 originals, then their blurred copies


def _pool3(model, images):
    with torch.no_grad():
        return model(images)[0].double().numpy()


@pytest.fixture(scope="module")
def unfused(extractor, images):
    """torch-fidelity's network as it ships (channels-first, batch norms and ReLUs apart)."""
    return _pool3(fid_weights.load_extractor(extractor.weights.path), images)


def test_the_evaluator_runs_the_fused_network(extractor):
    blocks = [m for m in extractor.model.modules() if isinstance(m, fid_fused.ConvReLU)]
    assert len(blocks) == fid_weights.N_LAYERS
    assert not any(isinstance(m, nn.BatchNorm2d) for m in extractor.model.modules())
    if torch.backends.mkldnn.is_available():
        assert all(b.fused_relu for b in blocks)
    assert extractor.key.endswith(f"-{fid_fused.TAG}") and fid_fused.TAG in extractor.describe()["inference"]


def test_fused_features_equal_torch_fidelity_to_float_rounding(extractor, images, unfused):
    fused = fid.inception_features(images, extractor=extractor)
    scale = np.abs(unfused).max()
    assert scale > 0.1  # real features, not zeros
    assert np.abs(fused - unfused).max() <= 1e-5 * scale
    n = len(images) // 2
    fid_fused_net = fid.frechet_distance(*fid.statistics(fused[:n]), *fid.statistics(fused[n:]))
    fid_unfused = fid.frechet_distance(*fid.statistics(unfused[:n]), *fid.statistics(unfused[n:]))
    assert fid_unfused > 1.0  # blur moves it: the comparison is not between two zeros
    assert abs(fid_fused_net - fid_unfused) < 1e-3


def test_plain_path_equals_the_fused_op(extractor, images):
    """Where oneDNN's fused op is not used (CUDA, other dtypes), conv + ReLU gives the same numbers."""
    blocks = [m for m in extractor.model.modules() if isinstance(m, fid_fused.ConvReLU)]
    fused = _pool3(extractor.model, images[:2])
    saved = [b.fused_relu for b in blocks]
    try:
        for b in blocks:
            b.fused_relu = False
        plain = _pool3(extractor.model, images[:2])
    finally:
        for b, op in zip(blocks, saved):
            b.fused_relu = op
    np.testing.assert_allclose(plain, fused, rtol=0, atol=1e-5 * np.abs(fused).max())


def test_the_fused_network_pickles(extractor):
    import pickle

    copy = pickle.loads(pickle.dumps(extractor.model))
    assert sum(isinstance(m, fid_fused.ConvReLU) for m in copy.modules()) == fid_weights.N_LAYERS


def test_fuse_needs_conv_batch_norm_blocks():
    with pytest.raises(ValueError, match="no conv"):
        fid_fused.fuse(nn.Sequential(nn.Linear(2, 2)))
    block = nn.Module()
    block.conv, block.bn = nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), nn.BatchNorm2d(4)
    with pytest.raises(ValueError, match="padding"):
        fid_fused.fuse(nn.Sequential(block))
