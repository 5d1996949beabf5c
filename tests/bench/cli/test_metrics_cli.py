"""`python -m bench.metrics ORIG_DIR RECON_DIR`: all metrics for two folders of same-named images,
with 95% bootstrap intervals over the images, JSON on the last line; bad input is one line on stderr and exit code 2."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

from bench.cli.metrics import main
from bench.evaluation.metrics import keys
from bench.reporting import fid_infinity_interval
from bench.reporting import intervals as ci
from tests.bench.evaluation.metric_images import blur, tiles, write_folder


def _cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "bench.metrics", *map(str, args)], check=False, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    x = tiles(5, offset=3)
    y = blur(x, 1.0)
    write_folder(x, base / "orig")
    write_folder(y, base / "recon")
    return base / "orig", base / "recon", x, y


def test_all_metrics_for_two_folders(folders):
    orig, recon, x, y = folders
    out = _cli(orig, recon)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    m, p = result["metrics"], result["protocol"]
    for key in (keys.PSNR, keys.SSIM, keys.FID, keys.KID, keys.LPIPS, keys.ST_LPIPS):
        assert key in m
    psnr = np.mean([peak_signal_noise_ratio(a.permute(1, 2, 0).numpy(), b.permute(1, 2, 0).numpy(), data_range=255)
                    for a, b in zip(x, y)])
    assert m[keys.PSNR] == pytest.approx(psnr, rel=1e-9)
    assert m[keys.FID] > 0
    assert p["n_images"] == 5 and p["fid"]["n_images"] == 5 and p["fid"]["rank_deficient"]
    assert p["lpips"]["name"] in ("lpips-alex", "st-lpips-alex")
    other = keys.ST_LPIPS if p["lpips"]["name"] == "lpips-alex" else keys.LPIPS
    assert m[p["lpips"]["key"]] > 0 and m[other] is None
    assert "rank-deficient" in out.stdout  # the human-readable note before the JSON line
    # 95% intervals: the tables' image bootstrap (the same fixed resamples) of the per-image PSNRs
    per_image = np.array([peak_signal_noise_ratio(a.permute(1, 2, 0).numpy(), b.permute(1, 2, 0).numpy(),
                                                  data_range=255) for a, b in zip(x, y)])
    expected = ci.bootstrap_interval(psnr, ci.mean_replicates(per_image, ci.resample_indices(5, ci.IMAGE_RESAMPLES)), 5)
    got = result["intervals"]
    assert got[keys.PSNR]["low"] == pytest.approx(expected.low, rel=1e-9)
    assert got[keys.PSNR]["high"] == pytest.approx(expected.high, rel=1e-9)
    assert per_image.min() < got[keys.PSNR]["low"] < psnr < got[keys.PSNR]["high"] < per_image.max()
    for key in (keys.SSIM, keys.FID, keys.KID, p["lpips"]["key"]):  # rFID/KID from the Inception features
        assert got[key]["low"] < m[key] < got[key]["high"] and got[key]["n_images"] == 5
    assert got[keys.FID]["resamples"] == ci.FEATURE_RESAMPLES and got[keys.PSNR]["resamples"] == ci.IMAGE_RESAMPLES
    # rFID-infinity (Chong & Forsyth) from the same features, with its interval (fewer resamples, each refitted)
    assert p["fid"]["fid_inf"]["sizes"] == [3, 4, 5] and m[keys.FID_INF] is not None
    assert got[keys.FID_INF]["low"] < m[keys.FID_INF] < got[keys.FID_INF]["high"]
    assert got[keys.FID_INF]["resamples"] == fid_infinity_interval.RESAMPLES
    assert next(line for line in out.stdout.splitlines() if line.strip().startswith("fid_inf:")).endswith("]")
    psnr_line = next(line for line in out.stdout.splitlines() if line.strip().startswith("psnr:"))
    assert psnr_line.endswith(f"[{got[keys.PSNR]['low']:.6g}, {got[keys.PSNR]['high']:.6g}]")
    assert "95% bootstrap interval over the 5 images" in out.stdout


def test_pixel_metrics_only_and_identical_folders(folders, capsys):
    orig, _, _, _ = folders
    assert main([str(orig), str(orig), "--no-perceptual"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    m, got = result["metrics"], result["intervals"]
    assert m[keys.PSNR] == "inf" and m[keys.SSIM] == pytest.approx(1.0) and m[keys.FID] is None
    # infinite PSNR has no interval; every image's SSIM is 1, so its interval is the point; no features
    assert keys.PSNR not in got and keys.FID not in got
    assert got[keys.SSIM]["low"] == pytest.approx(1.0) and got[keys.SSIM]["high"] == pytest.approx(1.0)


@pytest.mark.parametrize("case", ["missing_name", "other_size", "empty", "not_a_folder", "no_args"])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, case, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    x = tiles(3)
    write_folder(x, a)
    if case == "missing_name":
        write_folder(x[:2], b)
    elif case == "other_size":
        write_folder(tiles(3, resolution=64), b)
    elif case == "empty":
        a, b = tmp_path / "e1", tmp_path / "e2"
        a.mkdir()
        b.mkdir()
    elif case == "not_a_folder":
        b = tmp_path / "nope"
    args = [] if case == "no_args" else [str(a), str(b), "--no-perceptual"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "error" in err
