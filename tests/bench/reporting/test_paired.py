"""Paired comparisons in the tables: two fake methods whose per-image PSNR differs by a known amount
(`delta`) under known per-image noise (tests/bench/reporting/fake_runs.two_methods). The best is
bold alone when the difference is resolved and the two share the mark (a tie) when it is not, in
both directions; over repeated draws a true difference of zero is resolved about 5% of the time and
one of four standard errors almost always; with >= 3 seeds the test is across seeds."""
from __future__ import annotations

import math

import numpy as np
import pytest

from bench.reporting import paired, tables
from bench.reporting.summary import build
from tests.bench.reporting.fake_runs import two_methods, write_run
from tests.bench.reporting.test_tables import _md_tables

BOLD = r"**"


def _psnr_cells(out) -> dict[str, str]:
    md = _md_tables(tables.render(build(out, metrics=["psnr"]), "md"))["photos"].set_index("Method")
    return md["PSNR ↑"].to_dict()


def _comparison(out) -> dict:
    comps = build(out, metrics=["psnr"]).comparisons
    assert len(comps) == 1  # two rows: the worse one against the best
    return comps.iloc[0].to_dict()


def _se_of_difference(noise: float, n: int) -> float:
    """The standard error of the mean paired difference: the shared difficulty cancels, two
    independent noises of sd `noise` remain."""
    return math.sqrt(2) * noise / math.sqrt(n)


@pytest.mark.parametrize("delta", [0.5, -0.5])
def test_a_large_difference_is_resolved_and_the_better_method_alone_is_bold(tmp_path, delta):
    # 0.5 dB at noise 1 dB over 252 images is ~5.6 standard errors of the paired difference; unpaired
    # (the 3 dB image difficulty left in) it would be ~1.8 and not resolved: this checks the pairing too
    two_methods(tmp_path, delta, noise=1.0, n=252)
    winner, loser = ("beta", "alpha") if delta > 0 else ("alpha", "beta")
    cells = _psnr_cells(tmp_path)
    assert cells[winner].startswith(BOLD) and not cells[loser].startswith(BOLD)
    assert cells[loser].startswith("<u>")  # the best of the rest
    c = _comparison(tmp_path)
    assert c["Method"] == loser and c["best_method"] == winner
    assert c["kind"] == paired.IMAGES and c["resolved"] and c["n"] == 252
    assert c["high"] < 0  # other - best, higher is better: the whole interval below zero
    assert c["diff"] == pytest.approx(-abs(delta), abs=4 * _se_of_difference(1.0, 252))


@pytest.mark.parametrize("delta", [0.02, -0.02])
def test_a_small_difference_is_a_tie_that_shares_the_bold_mark(tmp_path, delta):
    two_methods(tmp_path, delta, noise=1.0, n=252)  # 0.02 dB is ~0.2 standard errors
    cells = _psnr_cells(tmp_path)
    assert cells["alpha"].startswith(BOLD) and cells["beta"].startswith(BOLD)
    c = _comparison(tmp_path)
    assert c["kind"] == paired.IMAGES and not c["resolved"] and c["low"] < 0 < c["high"]
    text = tables.render(build(tmp_path, metrics=["psnr"]), "md")
    assert "a bold mark shared by several rows is a tie" in text and "paired bootstrap" in text
    assert "holds for these trained models on these images only" in text


def test_the_same_difference_is_resolved_with_many_images_and_a_tie_with_few(tmp_path):
    # 0.2 dB at noise 1 dB: ~6.3 standard errors over 2000 images, ~1.0 over 50
    two_methods(tmp_path / "many", 0.2, noise=1.0, n=2000)
    two_methods(tmp_path / "few", 0.2, noise=1.0, n=50)
    assert _comparison(tmp_path / "many")["resolved"]
    assert not _comparison(tmp_path / "few")["resolved"]
    cells = _psnr_cells(tmp_path / "few")
    assert cells["alpha"].startswith(BOLD) and cells["beta"].startswith(BOLD)


@pytest.mark.parametrize("delta_in_se, low, high", [(0.0, 0.0, 0.12), (4.0, 0.88, 1.0)])
def test_the_rate_of_resolved_differences_over_repeated_draws(tmp_path, delta_in_se, low, high):
    """No difference: resolved at about the 5% error rate (3 binomial standard errors over 60 draws
    allow up to 0.12). Four standard errors: the test's power is ~98%, at least 0.88 allowed."""
    n, noise, draws = 60, 1.0, 60
    delta = delta_in_se * _se_of_difference(noise, n)
    resolved = 0
    for draw in range(draws):
        sign = 1 if draw % 2 else -1  # half the draws each way round
        two_methods(tmp_path / str(draw), sign * delta, noise, n=n, draw=draw)
        resolved += bool(_comparison(tmp_path / str(draw))["resolved"])
    assert low <= resolved / draws <= high, resolved


@pytest.mark.parametrize("delta", [0.5, -0.5])
def test_with_three_seeds_the_test_is_across_seeds(tmp_path, delta):
    # no seed-to-seed spread: every seed's difference is ~delta, the paired t-test over seeds resolves it
    two_methods(tmp_path / "steady", delta, noise=1.0, n=252, seeds=(0, 1, 2))
    c = _comparison(tmp_path / "steady")
    assert c["kind"] == paired.SEEDS and c["resolved"] and c["n"] == 3 and c["test"] == "paired t-test over 3 seeds"
    winner = "beta" if delta > 0 else "alpha"
    assert c["best_method"] == winner
    # a run-to-run spread (sd 1.5 dB per run) larger than the difference: each seed alone would resolve
    # over images, but across seeds it is a tie
    two_methods(tmp_path / "noisy", delta, noise=1.0, n=252, seeds=(0, 1, 2), seed_sd=1.5, draw=3)
    c = _comparison(tmp_path / "noisy")
    assert c["kind"] == paired.SEEDS and not c["resolved"] and c["p"] >= 0.05
    cells = _psnr_cells(tmp_path / "noisy")
    assert cells["alpha"].startswith(BOLD) and cells["beta"].startswith(BOLD)


def test_fewer_than_three_seeds_in_one_row_falls_back_to_the_image_bootstrap(tmp_path):
    # alpha has 3 seeds, beta 1: no across-seed test; both rows are paired over the same images
    # (alpha by its per-image mean over its seeds)
    two_methods(tmp_path, 0.5, noise=1.0, n=252, seeds=(0,))
    rng = np.random.default_rng(9)
    for seed in (1, 2):
        write_run(tmp_path, "alpha", seed, {"psnr": 25.0 + rng.normal(0, 3, 252)})
    c = _comparison(tmp_path)
    assert c["kind"] == paired.IMAGES and c["test"].startswith("paired bootstrap over 252 images")
    # alpha's cell is its 3 seeds' t-interval all the same
    assert build(tmp_path, metrics=["psnr"]).per_dataset.set_index("Method").loc["alpha", "Interval"] == "t, 3 seeds"
