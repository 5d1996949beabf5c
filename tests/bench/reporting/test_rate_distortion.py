"""The rate-distortion figure's data are the tables' rows: each point a row's mean over seeds, each bar
its 95% interval (a t-interval with 3 seeds, an image bootstrap with fewer), one line per method
through its budgets; a method with one budget is one point; records without budgets draw nothing."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from bench.core import run_folder
from bench.reporting import rate_distortion, tables
from bench.reporting.summary import build
from tests.bench.reporting.fake_runs import write_run
from tests.bench.reporting.test_tables import _md_tables

POSITIONS = 16


def _run(out, method, k, seed, psnr):
    rec = write_run(out, method, seed, {"psnr": psnr}, k=k)
    path = run_folder.runs_dir(out) / rec["run_id"] / run_folder.RECORD
    bits = POSITIONS * math.log2(k)
    path.write_text(json.dumps({**rec, "bits_per_image": bits, "bits_per_pixel": bits / 1024}))


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """alpha at K=16 (3 seeds) and K=64 (1 seed); beta at K=16 only (1 seed)."""
    folder = tmp_path_factory.mktemp("rd")
    rng = np.random.default_rng(0)
    difficulty = 24.0 + rng.normal(0, 2, 40)
    for seed in (0, 1, 2):
        _run(folder, "alpha", 16, seed, difficulty + rng.normal(0, 0.5) + rng.normal(0, 0.3, 40))
    _run(folder, "alpha", 64, 0, difficulty + 2 + rng.normal(0, 0.3, 40))
    _run(folder, "beta", 16, 0, difficulty + 1 + rng.normal(0, 0.3, 40))
    return folder


def test_points_and_bars_are_the_tables_means_and_intervals(out):
    built = build(out, metrics=["psnr"])
    rows = rate_distortion.drawable(built.per_dataset)
    by_name = {line.name: line for line in rate_distortion.lines(rows, "psnr")}
    assert sorted(by_name) == ["alpha", "beta"]
    frame = built.per_dataset.set_index(["Method", "Codebook size"])
    shown = _md_tables(tables.render(built, "md"))["photos"].set_index(["Method", "Codebook size"])
    for name, ks in (("alpha", (16, 64)), ("beta", (16,))):
        line = by_name[name]
        assert list(line.bits) == [POSITIONS * math.log2(k) for k in ks]  # sorted by budget: a line through them
        for i, k in enumerate(ks):
            row = frame.loc[(name, k)]
            assert line.mean[i] == pytest.approx(row["psnr"], abs=1e-12)
            assert line.mean[i] - line.bars[0, i] == pytest.approx(row["psnr_lo"], abs=1e-12)
            assert line.mean[i] + line.bars[1, i] == pytest.approx(row["psnr_hi"], abs=1e-12)
            # the table's cell: the same mean and half the same interval
            half = (line.bars[0, i] + line.bars[1, i]) / 2
            assert re.sub(r"\*\*|</?u>", "", shown.loc[(name, str(k)), "PSNR ↑"]) == f"{line.mean[i]:.2f} ± {half:.2f}"
    assert by_name["alpha"].kinds == ("95% t-interval over 3 seeds",
                                      "95% bootstrap interval over the validation images (1 seed)")
    assert len(by_name["beta"].bits) == 1  # one budget: one point


def test_the_figure_and_its_caption(out):
    built = build(out)
    paths, captions = rate_distortion.figures(built.per_dataset, out)
    assert [p.name for p in paths] == ["rate_distortion_photos.png", "rate_distortion_photos.svg"]
    assert all(p.stat().st_size > 1000 for p in paths)
    text = captions["rate_distortion_photos"]
    assert text.startswith("Rate-distortion on photos: rFID, PSNR, LPIPS against bits per image (log2 axis)")
    assert "95% t-interval over 3 seeds" in text and "bootstrap interval over the validation images" in text
    assert text.endswith("No rFID or LPIPS in these records: those panels are empty.")
    svg = paths[1].read_text()
    assert "bits per image" in svg and "no rFID in these records" in svg  # write_run records no rFID


def test_records_without_budgets_draw_nothing(tmp_path):
    write_run(tmp_path, "alpha", 0, {"psnr": np.full(8, 20.0)})
    assert rate_distortion.figures(build(tmp_path).per_dataset, tmp_path) == ([], {})
