"""The streaming evaluator gives exactly the numbers of the whole-set computation (every image
reconstructed first, then every metric over all of them), whatever the batch size; it writes the
per-image values with the image names and the reconstructions' features; and a metric registered in
a test is computed and stored like the built-in ones."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import methods
from bench.core import run_folder
from bench.core.images import to_float, to_uint8
from bench.evaluation.evaluator import GRID_IMAGES, GridImages, evaluate
from bench.evaluation.metrics import fid, image_quality, keys
from bench.evaluation.metrics import lpips as lp
from bench.evaluation.metrics.registry import METRICS, PER_IMAGE, Batch, Metric, register_metric
from bench.evaluation.metrics.usage import CodeUsage
from bench.models.autoencoder import VQAutoencoder
from datasets.tensor_dataset import UInt8Images

from .metric_images import tiles

N = 6
PROTOCOL = {"dataset": "stream-test", "split": "val", "resolution": 32}


def _model():
    torch.manual_seed(0)
    q = methods.create("vqgan", 16, 8)
    return VQAutoencoder(q, ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), resolution=32,
                         z_channels=8).eval()


@pytest.fixture(scope="module")
def data():
    return UInt8Images(tiles(N, offset=1), [f"tile_{i:02d}.png" for i in range(N)][::-1], dict(PROTOCOL))


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty FID reference cache and no standard LPIPS backbone (as on an offline machine)."""
    monkeypatch.setenv("VQBENCH_CACHE", str(tmp_path / "cache"))
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path
    torch.hub.set_dir(old)


@torch.no_grad()
def _whole_set(model, images, batch_size):
    """Today's computation: reconstruct everything (same batches), then each metric over all images."""
    recons, indices = [], []
    for i in range(0, len(images), batch_size):
        xrec, out = model(to_float(images[i : i + batch_size]))
        recons.append(to_uint8(xrec))
        indices.append(out.indices)
    recons = torch.cat(recons)
    usage = CodeUsage(model.quantizer.codebook_size)
    for idx in indices:
        usage.update(idx)
    net = lp.get_network("alex", "cpu")
    f_orig = fid.inception_features(images, batch_size)
    f_rec = fid.inception_features(recons, batch_size)
    per_image = {keys.PSNR: image_quality.psnr(images, recons), keys.SSIM: image_quality.ssim(images, recons),
                 net.key: lp.distances(images, recons, batch_size, net)}
    metrics = {k: float(v.mean()) for k, v in per_image.items()}
    metrics[keys.FID] = fid.frechet_distance(*fid.statistics(f_orig), *fid.statistics(f_rec))
    metrics[keys.KID], metrics[keys.KID_STD], _ = fid.kid(f_orig, f_rec)
    metrics.update(usage.stats())
    return metrics, {k: v.numpy() for k, v in per_image.items()}, (f_orig, f_rec), usage.counts.numpy()


def test_streaming_equals_the_whole_set_computation(offline, data):
    model = _model()
    expected, per_image, (f_orig, f_rec), counts = _whole_set(model, data.images, batch_size=4)  # batches of 4 + 2
    run = offline / "run"
    metrics, protocol = evaluate(model, data, run, torch.device("cpu"), batch_size=4)
    for key, value in expected.items():
        assert metrics[key] == value, key  # exactly: the same arithmetic on the same batches
    other = keys.LPIPS if keys.ST_LPIPS in per_image else keys.ST_LPIPS
    assert metrics[other] is None  # of LPIPS and ST-LPIPS, exactly one ran
    with np.load(run / run_folder.PER_IMAGE) as z:
        assert sorted(z.files) == sorted(["names", *per_image])
        assert list(z["names"]) == data.names  # split order, not sorted
        for key, values in per_image.items():
            assert z[key].dtype == np.float64
            np.testing.assert_array_equal(z[key], values)
    stored = np.load(run / run_folder.FEATURES)
    assert stored.dtype == np.float16 and stored.shape == (N, fid.FEATURE_DIM)
    np.testing.assert_array_equal(stored, f_rec.astype(np.float16))
    np.testing.assert_array_equal(np.load(run / run_folder.CODE_COUNTS), counts)
    assert protocol["n_images"] == N and protocol["fid"]["n_images"] == N
    # The reference entry the record names holds the originals' features, for resampling elsewhere.
    from bench.evaluation.metrics import fid_reference

    with np.load(fid_reference.reference_file(protocol["fid"]["reference_file"])) as z:
        np.testing.assert_array_equal(z["features"], f_orig.astype(np.float32))


class _PixelModel(nn.Module):
    """A stand-in autoencoder whose output for an image depends on that image alone, bit for bit
    (elementwise arithmetic), so that only the evaluator's batching could change a result."""

    def __init__(self):
        super().__init__()
        self.quantizer = SimpleNamespace(codebook_size=16, code_groups={"low": (0, 8), "high": (8, 16)})

    def forward(self, x):
        indices = ((x[:, 0, ::4, ::4] + 1) * 7.99).long()
        return x * 0.8 + 0.05, SimpleNamespace(indices=indices)


def test_batch_size_does_not_change_the_results(offline, data):
    runs = {}
    for batch_size in (1, 4, N):
        metrics, _ = evaluate(_PixelModel(), data, offline / f"bs{batch_size}", torch.device("cpu"), batch_size=batch_size)
        with np.load(offline / f"bs{batch_size}" / run_folder.PER_IMAGE) as z:
            runs[batch_size] = metrics, {k: z[k] for k in z.files if k != "names"}
    ref_metrics, ref_values = runs[N]
    assert ref_metrics[keys.FID] is not None and ref_metrics["entropy_bits_high"] is not None
    for batch_size, (metrics, values) in runs.items():
        for key, value in ref_metrics.items():
            if value is None:
                assert metrics[key] is None
            elif key in (keys.FID, keys.KID, keys.KID_STD, keys.LPIPS, keys.ST_LPIPS, keys.FD_DINOV2, keys.CMMD):
                # networks: as exact as their own batched convolutions (Inception's are tested in test_fid)
                assert metrics[key] == pytest.approx(value, rel=1e-6, abs=1e-9), (batch_size, key)
            else:
                assert metrics[key] == value, (batch_size, key)
        for key, v in ref_values.items():
            np.testing.assert_allclose(values[key], v, rtol=1e-6, atol=1e-9)


def test_batch_size_moves_a_real_model_by_its_own_rounding_only(tmp_path, data):
    """A real autoencoder's batched convolutions can move a reconstruction by one uint8 level at a
    rounding boundary; the pixel metrics then move in their last digits, far below what tables show."""
    model = _model()
    a, _ = evaluate(model, data, tmp_path / "a", torch.device("cpu"), batch_size=1, perceptual=False)
    b, _ = evaluate(model, data, tmp_path / "b", torch.device("cpu"), batch_size=N, perceptual=False)
    for key in (keys.PSNR, keys.SSIM, keys.UTILIZATION, keys.ENTROPY_BITS):
        assert a[key] == pytest.approx(b[key], rel=1e-4), key


@pytest.fixture
def toy_metric():
    """A per-image metric registered for one test: mean absolute difference in uint8 levels."""
    def mean_abs(a, b):
        return (a.double() - b.double()).abs().flatten(1).mean(1)

    register_metric(Metric("toy_mae", "Toy MAE", "lower", 3, kind=PER_IMAGE, fn=mean_abs))
    yield mean_abs
    METRICS.remove("toy_mae")


def test_a_registered_per_image_metric_is_computed_and_stored(tmp_path, data, toy_metric):
    model = _model()
    metrics, protocol = evaluate(model, data, tmp_path, torch.device("cpu"), batch_size=N, perceptual=False)
    with torch.no_grad():
        recons = to_uint8(model(to_float(data.images))[0])
    expected = toy_metric(data.images, recons)
    assert metrics["toy_mae"] == pytest.approx(float(expected.mean()), rel=1e-6)
    with np.load(tmp_path / run_folder.PER_IMAGE) as z:
        np.testing.assert_allclose(z["toy_mae"], expected.numpy(), rtol=1e-6)
    assert "toy_mae" in protocol["per_image"]


def test_a_registered_metric_reaches_the_run_record(tmp_path, toy_metric):
    from bench.runs.config import RunConfig
    from bench.runs.runner import run_one

    rec = run_one(RunConfig(method="vqgan", preset="smoke", codebook_size=16, steps=2), tmp_path, progress=False)
    assert rec["status"] == "finished", rec["error"]
    assert rec["metrics"]["toy_mae"] > 0
    with np.load(run_folder.run_dir(tmp_path, rec["run_id"]) / run_folder.PER_IMAGE) as z:
        assert len(z["toy_mae"]) == rec["protocol"]["n_images"] == len(z["names"])
        assert rec["metrics"]["toy_mae"] == pytest.approx(float(z["toy_mae"].mean()))


def test_the_grid_keeps_the_first_images_only():
    grid = GridImages()
    for start in range(0, 40, 6):
        x = torch.arange(start, min(start + 6, 40), dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, 2, 2)
        grid.update(Batch(x, x))
    kept = torch.cat(grid.originals)
    assert len(kept) == GRID_IMAGES and kept[:, 0, 0, 0].tolist() == list(range(GRID_IMAGES))


def test_perceptual_off_is_recorded_and_usage_still_streams(tmp_path, data):
    metrics, protocol = evaluate(_model(), data, tmp_path, torch.device("cpu"), batch_size=4, perceptual=False)
    assert metrics[keys.FID] is None and metrics[keys.LPIPS] is None and metrics[keys.ST_LPIPS] is None
    assert "skipped" in protocol["fid"] and "skipped" in protocol["lpips"]
    assert metrics[keys.ENTROPY_BITS] is not None and 0 <= metrics[keys.ENTROPY_RATIO] <= 1
    assert not (tmp_path / run_folder.FEATURES).exists()  # no Inception features without rFID
    with np.load(tmp_path / run_folder.PER_IMAGE) as z:
        assert sorted(z.files) == ["names", keys.PSNR, keys.SSIM]
