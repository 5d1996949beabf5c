"""Generation metrics on features whose answers are known: precision and recall, Inception Score,
and the reason recorded when the Inception weights have no logits."""
import numpy as np
import pytest
import torch

from bench.generation import metrics as gm


def _blobs(n, centre, seed, d=8):
    return np.random.RandomState(seed).randn(n, d) * 0.1 + centre


def test_precision_recall_of_equal_disjoint_and_collapsed_sets():
    real = _blobs(200, 0.0, 0)
    p, r = gm.precision_recall(real, _blobs(200, 0.0, 1))
    assert p > 0.75 and r > 0.75  # the same distribution (k-NN balls cover most of it in 8-d)
    p, r = gm.precision_recall(real, _blobs(200, 5.0, 2))
    assert p == 0.0 and r == 0.0  # far apart
    collapsed = np.repeat(real[:1], 200, axis=0) + 1e-6 * np.random.RandomState(3).randn(200, 8)
    p, r = gm.precision_recall(real, collapsed)
    assert p == 1.0 and r < 0.1  # every sample realistic, almost none of the variety: mode collapse


def test_knn_radius_excludes_the_point_itself():
    x = np.array([[0.0], [1.0], [3.0], [6.0]])
    radii = gm.knn_radii(__import__("torch").as_tensor(x), k=1)
    assert radii.tolist() == [1.0, 1.0, 4.0, 9.0]  # squared distance to the nearest other point
    with pytest.raises(ValueError, match="more than 3"):
        gm.precision_recall(x[:3], x, k=3)


def test_inception_score_bounds():
    n, c = 100, 10
    uniform = np.zeros((n, c))
    assert gm.inception_score(uniform)[0] == pytest.approx(1.0)  # no class is certain: IS 1
    confident = np.full((n, c), -50.0)
    confident[np.arange(n), np.arange(n) % c] = 50.0  # certain and evenly spread: IS = number of classes
    assert gm.inception_score(confident, splits=1)[0] == pytest.approx(c, rel=1e-6)  # (the 10 shuffled splits
    assert gm.inception_score(confident)[0] < c  # are not each evenly spread, so their scores are lower)


@pytest.mark.parametrize("n", [16, 1003, 1000])
def test_inception_score_equals_torch_fidelity(n):
    """torch-fidelity's own IS on the same logits: its shuffle and its split boundaries, also where n
    is not a multiple of the 10 splits."""
    from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric

    logits = np.random.RandomState(n).randn(n, 1008) * 3.0
    ref = isc_features_to_metric(torch.as_tensor(logits), splits=gm.IS_SPLITS)
    mean, std = gm.inception_score(logits)
    assert mean == pytest.approx(ref[KEY_METRIC_ISC_MEAN], rel=1e-12)
    assert std == pytest.approx(ref[KEY_METRIC_ISC_STD], rel=1e-9, abs=1e-12)
    with pytest.raises(ValueError, match="at least 10 samples"):
        gm.inception_score(logits[:9])


@pytest.mark.parametrize(("n_real", "n_fake", "shift"), [(300, 200, 0.0), (257, 311, 0.3), (100, 100, 1.0)])
def test_precision_recall_equal_torch_fidelity(n_real, n_fake, shift):
    """torch-fidelity's precision and recall (its k = 3 neighbourhood) on the same features."""
    from torch_fidelity.metric_prc import calculate_precision_recall_full

    rng = np.random.RandomState(n_real + n_fake)
    real = rng.randn(n_real, 16)
    fake = rng.randn(n_fake, 16) * 1.3 + shift
    ref_p, ref_r = calculate_precision_recall_full(torch.as_tensor(fake), torch.as_tensor(real), neighborhood=3)
    p, r = gm.precision_recall(real, fake, k=3)
    assert (p, r) == pytest.approx((ref_p, ref_r), abs=1e-6)  # its means are float32; one sample is >= 1/311
    assert 0.0 < p < 1.0 and 0.0 < r < 1.0  # neither trivially 0 nor 1: the balls decide


def test_is_is_unavailable_with_the_derived_weights(monkeypatch):
    from pathlib import Path

    from bench.evaluation.metrics import fid, fid_weights

    weights = fid_weights.InceptionWeights(Path("derived.pth"), "fid-helper-derived", {})
    monkeypatch.setattr(fid, "get_extractor", lambda device="cpu": fid.Extractor(None, weights, device))
    ext = gm.generation_extractor("cpu")
    assert ext.logits_model is None and "no logits layer" in ext.is_unavailable
    assert fid_weights.TORCH_FIDELITY_FILE in ext.is_unavailable
