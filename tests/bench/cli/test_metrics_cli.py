"""`python -m bench.metrics ORIG_DIR RECON_DIR`: all metrics for two folders of same-named images,
JSON on the last line; bad input is one line on stderr and exit code 2."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

from bench.cli.metrics import main
from bench.evaluation.metrics import keys
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


def test_pixel_metrics_only_and_identical_folders(folders, capsys):
    orig, _, _, _ = folders
    assert main([str(orig), str(orig), "--no-perceptual"]) == 0
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["metrics"]
    assert m[keys.PSNR] == "inf" and m[keys.SSIM] == pytest.approx(1.0) and m[keys.FID] is None


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
