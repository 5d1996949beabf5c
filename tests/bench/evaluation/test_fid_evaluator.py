"""The evaluator carries the full metric set: every record's metrics hold rFID, KID and the LPIPS
that ran (standard under `lpips`, shift-tolerant under `st_lpips`), and the protocol says how they
were computed. Also: PSNR/SSIM batch-size independence at the evaluator's entry point."""
import math

import numpy as np

import pytest
import torch

import methods
from bench.evaluation.evaluator import evaluate, image_metrics
from bench.evaluation.stream import evaluate_images
from bench.evaluation.metrics import fid, keys
from bench.models.autoencoder import VQAutoencoder
from datasets.tensor_dataset import UInt8Images

from .metric_images import blur, tiles


@pytest.fixture(scope="module")
def extractor():
    return fid.get_extractor()  # loaded (or derived) once, before any test moves the cache


def _model():
    torch.manual_seed(0)
    q = methods.create("vqgan", 16, 8)
    return VQAutoencoder(q, ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), resolution=32,
                         z_channels=8).eval()


def test_records_carry_fid_and_the_lpips_that_ran(tmp_path, monkeypatch, extractor):
    monkeypatch.setenv("VQBENCH_CACHE", str(tmp_path / "cache"))
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))  # no standard LPIPS backbone, as offline
    try:
        protocol = {"dataset": "photos-test", "split": "val", "resolution": 32}
        data = UInt8Images(tiles(4), [f"t{i}" for i in range(4)], protocol)
        (tmp_path / "run").mkdir()
        metrics, proto = evaluate(_model(), data, tmp_path / "run", torch.device("cpu"), batch_size=4)
    finally:
        torch.hub.set_dir(old)
    for key in keys.RECORD_METRICS:
        assert key in metrics
    assert metrics[keys.FID] > 0 and math.isfinite(metrics[keys.FID])
    assert metrics[keys.KID] is not None and metrics[keys.KID_STD] is not None
    lpips_entry = proto["lpips"]
    if lpips_entry["name"] == "st-lpips-alex":
        assert metrics[keys.LPIPS] is None and metrics[keys.ST_LPIPS] > 0
    assert proto["fid"]["n_images"] == 4 and proto["fid"]["rank_deficient"]
    assert proto["fid"]["weights"] in ("torch-fidelity", "fid-helper-derived")
    assert "inception-v3-compat" in proto["fid"]["feature_extractor"]
    assert not proto["fid"]["reference_cached"]
    assert proto["fid"]["reference_file"] == "photos-test__val__32px__n4__" + extractor.key + ".npz"
    # A second run (another method, say) reuses the reference statistics of the split.
    metrics2, proto2 = evaluate(_model(), data, tmp_path / "run", torch.device("cpu"), batch_size=4)
    assert proto2["fid"]["reference_cached"]
    assert metrics2[keys.FID] == pytest.approx(metrics[keys.FID], rel=1e-6)


def test_perceptual_metrics_can_be_switched_off():
    x = tiles(4)
    metrics, proto = image_metrics(x, blur(x, 1.0), perceptual=False)
    assert metrics[keys.FID] is None and metrics[keys.LPIPS] is None and metrics[keys.ST_LPIPS] is None
    assert metrics[keys.PSNR] > 0 and "skipped" in proto["fid"] and "skipped" in proto["lpips"]


def test_image_metrics_take_uint8_only():
    x = tiles(2)
    with pytest.raises(TypeError):
        image_metrics(x.float(), x.float(), perceptual=False)


def test_psnr_and_ssim_do_not_depend_on_batch_size():
    x = tiles(70, offset=2)  # 70 > 64: a second batch at batch size 64
    y = blur(x, 1.0)
    ref = evaluate_images(x, y, batch_size=256, perceptual=False)
    for batch_size in (1, 7, 64):
        got = evaluate_images(x, y, batch_size=batch_size, perceptual=False)
        for key in (keys.PSNR, keys.SSIM):
            assert got.metrics[key] == pytest.approx(ref.metrics[key], rel=1e-12)
            np.testing.assert_allclose(got.per_image[key], ref.per_image[key], rtol=1e-12)
