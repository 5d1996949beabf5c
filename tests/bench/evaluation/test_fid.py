"""rFID and KID agree with the reference implementations (pytorch-fid, torch-fidelity) and behave.

Inception features cost about 0.2 s per image on 2 CPU cores, so the default tests use a few 32 px
tiles and share their features through module fixtures; larger checks are marked slow."""
import numpy as np
import pytest
import torch
from pytorch_fid.fid_score import calculate_frechet_distance
from threadpoolctl import threadpool_limits

from bench.evaluation.metrics import fid, keys

from .metric_images import blur, tiles, write_folder

N = 10  # images per set in the default tests (rank-deficient covariance, which FID must handle)


def _gaussian_features(n, d, seed, shift=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return (rng.normal(size=(n, d)) * scale) @ mix + shift


@pytest.mark.parametrize("n,d", [(500, 64), (300, 128), (40, 96)])  # full rank, and rank-deficient (n < d)
def test_frechet_distance_equals_pytorch_fid(n, d):
    f1 = _gaussian_features(n, d, seed=1)
    f2 = _gaussian_features(n, d, seed=2, shift=0.3, scale=1.2)
    mu1, s1 = fid.statistics(f1)
    mu2, s2 = fid.statistics(f2)
    ours = fid.frechet_distance(mu1, s1, mu2, s2)
    ref = calculate_frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(ref, rel=1e-6)


def test_statistics_are_mean_and_unbiased_covariance():
    f = _gaussian_features(50, 8, seed=3)
    mu, sigma = fid.statistics(f)
    np.testing.assert_allclose(mu, f.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, (f - f.mean(0)).T @ (f - f.mean(0)) / 49, rtol=1e-10)
    with pytest.raises(ValueError):
        fid.statistics(f[:1])


def test_frechet_distance_of_identical_statistics_is_zero_and_symmetric():
    f1, f2 = _gaussian_features(200, 32, seed=4), _gaussian_features(200, 32, seed=5, shift=1.0)
    s1, s2 = fid.statistics(f1), fid.statistics(f2)
    assert abs(fid.frechet_distance(*s1, *s1)) < 1e-9
    assert fid.frechet_distance(*s1, *s2) == pytest.approx(fid.frechet_distance(*s2, *s1), rel=1e-9)
    with pytest.raises(ValueError):
        fid.frechet_distance(s1[0], s1[1], s2[0][:5], s2[1][:5, :5])


def test_kid_equals_torch_fidelity():
    from torch_fidelity.metric_kid import kid_features_to_metric

    f1 = _gaussian_features(120, 64, seed=6).astype(np.float32)
    f2 = _gaussian_features(90, 64, seed=7, shift=0.2).astype(np.float32)
    mean, std, m = fid.kid(f1, f2, subsets=20, subset_size=50)
    ref = kid_features_to_metric(torch.from_numpy(f1), torch.from_numpy(f2), kid_subsets=20, kid_subset_size=50,
                                 verbose=False)
    assert m == 50
    assert mean == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-4)
    assert std == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-4)
    # Above KID_FULL_KERNEL_MAX the kernels are computed per subset: the same numbers.
    old = fid.KID_FULL_KERNEL_MAX
    try:
        fid.KID_FULL_KERNEL_MAX = 10
        assert fid.kid(f1, f2, subsets=20, subset_size=50)[0] == pytest.approx(mean, rel=1e-9)
    finally:
        fid.KID_FULL_KERNEL_MAX = old


# --- with the Inception network -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def images():
    return tiles(N)


@pytest.fixture(scope="module")
def features(images):
    """Features of the originals and of copies blurred with sigma 1 and 2, one pass each."""
    return {s: fid.inception_features(blur(images, s)) for s in (0, 1.0, 2.0)}


def test_features_are_pool3_of_uint8_images(images, features):
    f = features[0]
    assert f.shape == (N, fid.FEATURE_DIM) and f.dtype == np.float64
    assert (f >= 0).all() and f.std() > 0  # pool3 follows a ReLU
    with pytest.raises(TypeError):
        fid.inception_features(images.float())


def test_fid_against_itself_is_zero_and_grows_with_blur(features):
    ref = fid.statistics(features[0])
    self_fid = fid.frechet_distance(*ref, *fid.statistics(features[0]))
    fid1 = fid.frechet_distance(*ref, *fid.statistics(features[1.0]))
    fid2 = fid.frechet_distance(*ref, *fid.statistics(features[2.0]))
    # ~0: the square roots of the covariance's round-off eigenvalues (~1e-14) add up to ~1e-4 over 2048 dims
    assert abs(self_fid) < 1e-3
    assert 1.0 < fid1 < fid2


def test_fid_of_the_same_images_in_another_order_is_zero(images, features):
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(0))
    shuffled = features[0][perm.numpy()]
    assert abs(fid.frechet_distance(*fid.statistics(features[0]), *fid.statistics(shuffled))) < 1e-3


def test_features_do_not_depend_on_batch_size(images, features):
    """Batches of 1 and 7 (7 + 1) against the fixture's features, computed in one batch of 64."""
    subset = images[:8]
    for batch_size in (1, 7):
        f = fid.inception_features(subset, batch_size=batch_size)
        np.testing.assert_allclose(f, features[0][:8], rtol=0, atol=1e-4)
        assert np.abs(f.mean(0) - features[0][:8].mean(0)).max() < 1e-5


def test_fid_equals_torch_fidelity_end_to_end(tmp_path, images):
    """torch-fidelity reads the two folders itself, with the same weights file; our number comes from
    the evaluator's entry point on the same images read back from the folders."""
    import torch_fidelity

    from bench.cli.metrics import load_folder
    from bench.evaluation.evaluator import image_metrics

    a, b = tmp_path / "orig", tmp_path / "recon"
    names = write_folder(images[:8], a)
    write_folder(blur(images[:8], 1.0), b)
    weights = fid.get_extractor().weights.path
    with threadpool_limits(limits=1, user_api="blas"):  # its 2048x2048 eigvals, see fid.frechet_distance
        ref = torch_fidelity.calculate_metrics(input1=str(a), input2=str(b), fid=True, cuda=False, cache=False,
                                               save_cpu_ram=True, verbose=False,
                                               feature_extractor_weights_path=str(weights))
    metrics, protocol = image_metrics(load_folder(a, names), load_folder(b, names), use_cache=False)
    assert metrics[keys.FID] == pytest.approx(ref["frechet_inception_distance"], rel=1e-5)
    assert protocol["fid"]["n_images"] == 8 and protocol["fid"]["rank_deficient"]


@pytest.mark.slow
def test_fid_equals_pytorch_fid_on_inception_features_and_torch_fidelity_on_64_images(tmp_path):
    """The same checks at a size closer to use: 64 images per folder, and pytorch-fid's scipy sqrtm
    on the real 2048-d features (about 2 minutes on 2 CPU cores)."""
    import torch_fidelity

    x = tiles(64, offset=1)
    y = blur(x, 1.5)
    fx, fy = fid.inception_features(x), fid.inception_features(y)
    ours = fid.frechet_distance(*fid.statistics(fx), *fid.statistics(fy))
    with threadpool_limits(limits=1, user_api="blas"):
        assert ours == pytest.approx(calculate_frechet_distance(*fid.statistics(fx), *fid.statistics(fy)), rel=1e-6)
    write_folder(x, tmp_path / "a")
    write_folder(y, tmp_path / "b")
    with threadpool_limits(limits=1, user_api="blas"):
        ref = torch_fidelity.calculate_metrics(input1=str(tmp_path / "a"), input2=str(tmp_path / "b"), fid=True,
                                               kid=True, kid_subset_size=64, kid_subsets=100, cuda=False, cache=False,
                                               save_cpu_ram=True, verbose=False,
                                               feature_extractor_weights_path=str(fid.get_extractor().weights.path))
    assert ours == pytest.approx(ref["frechet_inception_distance"], rel=1e-5)
    kid_mean, _, _ = fid.kid(fx, fy)
    assert kid_mean == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-3)
