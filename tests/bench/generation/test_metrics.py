"""Generation metrics on features whose answers are known: precision and recall, Inception Score,
and the reason recorded when the Inception weights have no logits."""
import numpy as np
import pytest

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
    mean, std = gm.inception_score(confident, splits=10)
    assert mean == pytest.approx(c, rel=1e-6) and std < 1e-6


def test_is_is_unavailable_with_the_derived_weights(monkeypatch):
    from pathlib import Path

    from bench.evaluation.metrics import fid, fid_weights

    weights = fid_weights.InceptionWeights(Path("derived.pth"), "fid-helper-derived", {})
    monkeypatch.setattr(fid, "get_extractor", lambda device="cpu": fid.Extractor(None, weights, device))
    ext = gm.generation_extractor("cpu")
    assert ext.logits_model is None and "no logits layer" in ext.is_unavailable
    assert fid_weights.TORCH_FIDELITY_FILE in ext.is_unavailable
