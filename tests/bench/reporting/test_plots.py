"""Figures from the hand-written fixture: the expected PNG and SVG files, valid and non-empty."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.core import run_folder
from bench.reporting import code_words, plots
from bench.reporting.summary import build
from tests.bench.reporting.results_fixture import VQCT_WORDS, results_out, write_fixture  # noqa: F401 - results_out is the `out` fixture


@pytest.fixture(scope="module")
def made(out):
    return plots.make_all(out, build(out))


def _check(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 500, path
    if path.suffix == ".png":
        with Image.open(path) as img:
            assert img.format == "PNG" and img.width > 100 and img.height > 100
    else:
        assert ET.parse(path).getroot().tag.endswith("svg")


def test_expected_files(out, made):
    names = sorted(p.name for paths in made["figures"].values() for p in paths)
    stems = ["code_frequency_cub200", "code_frequency_photos", "utilization_cub200", "utilization_photos",
             "reconstructions_cub200", "reconstructions_photos", "sweep_photos",
             "code_words_cub200-vqct-k16-s0", "code_words_photos-vqct-k16-s0"]
    assert names == sorted(f"{s}.{ext}" for s in stems for ext in ("png", "svg"))
    for paths in made["figures"].values():
        for p in paths:
            assert p.parent == out / "figures"
            _check(p)
    assert not list((out / "figures").glob("*.tmp*"))  # written through temp files, none left behind
    # the fixture's records predate bits per image (test_report's carry them)
    assert made["notes"] == ["no rate-distortion figure: no finished run recorded its bits per image"]


def test_sweep_needs_two_codebook_sizes(out, made):
    # cub200 has one codebook size: no sweep figure for it, and the reason is not a crash
    assert not (out / "figures" / "sweep_cub200.png").exists()


def test_reconstructions_show_every_method(out, made):
    with Image.open(out / "figures" / "reconstructions_photos.png") as img:
        w, h = img.size
    # originals + vqct K=16 + vqgan K=16 + vqgan K=32 stacked: taller than wide for 32x8 strips
    assert h > w * 0.8


def test_code_words_from_a_list_and_mismatch(tmp_path):
    counts = np.array([5, 1, 0, 9, 2, 3, 0, 0, 4, 1, 8, 2, 0, 1, 7, 6])
    paths = code_words.code_words_top(counts, VQCT_WORDS, tmp_path, "words", top=3)
    assert [p.name for p in paths] == ["words.png", "words.svg"]
    svg = paths[1].read_text()
    # adjective codes 0-5 come first, then nouns: top adjectives shiny (9), red (5), old (3);
    # top nouns bird (8), boat (7), lamp (6). svg.fonttype "none" keeps the labels as text.
    for word in ("shiny (#3)", "red (#0)", "old (#5)", "bird (#10)", "boat (#14)", "lamp (#15)"):
        assert word in svg
    assert "wooden" not in svg and "cup" not in svg  # count 2: outside both top 3s
    with pytest.raises(ValueError, match="do not belong"):
        code_words.code_words_top(counts[:5], VQCT_WORDS, tmp_path, "bad")


def test_code_words_lookup(tmp_path):
    assert code_words.code_words(tmp_path, {}) is None
    (tmp_path / run_folder.CODE_WORDS).write_text(json.dumps({"groups": {"adj": [0, 2], "noun": [2, 4]},
                                                         "words": ["big", "red", "cat", "dog"]}))
    assert code_words.code_words(tmp_path) == {"adj": ["big", "red"], "noun": ["cat", "dog"]}
    assert code_words.code_words(tmp_path, {"code_words": {"adj": ["x"], "noun": ["y"]}}) == {"adj": ["x"], "noun": ["y"]}
    (tmp_path / run_folder.CODE_WORDS).write_text(json.dumps({"groups": {}, "words": ["a", "b"]}))  # vqct-nopos
    assert code_words.code_words(tmp_path) == {"word": ["a", "b"]}


def test_runs_with_code_names_but_no_counts_are_listed_not_dropped(tmp_path):
    write_fixture(tmp_path)
    for f in tmp_path.glob("runs/*/code_counts.npy"):
        f.unlink()
    paths, skipped = code_words.code_words_figures(build(tmp_path).runs, tmp_path)
    assert paths == []
    assert sorted(s.split(":")[0] for s in skipped) == ["cub200-vqct-k16-s0", "photos-vqct-k16-s0"]
    assert all("no code_counts.npy" in s for s in skipped)


def test_code_words_figure_follows_the_file_not_the_method(tmp_path):
    write_fixture(tmp_path)
    for f in tmp_path.glob("runs/*vqct*/code_words.json"):
        f.unlink()  # codes without names: no figure and nothing to explain
    vqgan = tmp_path / "runs" / "photos-vqgan-k32-s0"
    (vqgan / run_folder.CODE_WORDS).write_text(json.dumps({"groups": {}, "words": [f"w{i}" for i in range(32)]}))
    paths, skipped = code_words.code_words_figures(build(tmp_path).runs, tmp_path)
    assert [p.name for p in paths] == ["code_words_photos-vqgan-k32-s0.png", "code_words_photos-vqgan-k32-s0.svg"]
    assert skipped == []
    assert "w0 (#" in paths[1].read_text()


def test_runs_without_files_make_no_figure(tmp_path):
    write_fixture(tmp_path, images=False)
    made = plots.make_all(tmp_path, build(tmp_path))
    assert made["figures"]["code_frequency"] == [] and made["figures"]["reconstructions"] == []
    assert made["figures"]["sweep"]  # the sweep needs only the records


def test_sweep_error_bars_are_the_tables_95_percent_intervals(out):
    photos = build(out, metrics=["psnr", "fid"]).per_dataset
    photos = photos[(photos["Dataset"] == "photos") & (photos["Finished"] > 0)]
    bars = plots.error_bars(photos, "psnr")
    # the fixture stores per-image PSNR: each bar spans the row's image-bootstrap interval
    assert np.allclose(bars[0], photos["psnr"] - photos["psnr_lo"])
    assert np.allclose(bars[1], photos["psnr_hi"] - photos["psnr"]) and (bars > 0).all()
    # no Inception features in the fixture, so no rFID interval: the std over seeds (vqgan K=16's
    # two seeds, 10 and 14), 0 for one seed
    fid = plots.error_bars(photos, "fid")
    assert sorted(fid[0].round(6)) == sorted([0.0, 0.0, round(float(np.std([10.0, 14.0], ddof=1)), 6)])
