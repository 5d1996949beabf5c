"""95% intervals: the t-interval over seeds and the image bootstrap cover the true mean at about 95%
over repeated draws; the table's interval is the bootstrap's; rFID/KID on resamples equal the
evaluator's formulas; rFID intervals come from the stored features and the cached reference."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

from bench.evaluation.metrics import fid
from bench.reporting import feature_bootstrap, intervals, tables
from bench.reporting.summary import build
from tests.bench.reporting.fake_runs import write_reference, write_run
from tests.bench.reporting.test_tables import _md_tables

DRAWS = 200


def _within_binomial(hits: int, draws: int, p: float = 0.95) -> bool:
    """Coverage within 3 binomial standard errors of p (false alarm rate ~0.3%)."""
    return abs(hits / draws - p) <= 3 * math.sqrt(p * (1 - p) / draws)


def test_t_interval_over_three_seeds_covers_the_true_mean_at_95_percent():
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(DRAWS):
        iv = intervals.t_interval(rng.normal(22.0, 0.5, 3))
        assert iv is not None and iv.kind == intervals.SEEDS and iv.n == 3
        hits += iv.low <= 22.0 <= iv.high
    assert _within_binomial(hits, DRAWS), hits


def test_image_bootstrap_covers_the_true_mean_at_95_percent():
    rng = np.random.default_rng(2)
    idx = intervals.resample_indices(252, intervals.IMAGE_RESAMPLES)
    hits = 0
    for _ in range(DRAWS):
        values = rng.normal(22.0, 3.0, 252)  # 252 images, as the default benchmark
        iv = intervals.bootstrap_interval(float(values.mean()), intervals.mean_replicates(values, idx), 252)
        hits += iv.low <= 22.0 <= iv.high
    assert _within_binomial(hits, DRAWS), hits


def test_t_interval_of_one_value_is_none_and_resamples_are_the_same_everywhere():
    assert intervals.t_interval([1.0]) is None
    a, b = intervals.resample_indices(10, 5), intervals.resample_indices(10, 5)
    assert (a == b).all() and a.shape == (5, 10) and a.max() < 10


def test_the_table_interval_is_the_bootstrap_of_the_stored_per_image_values(tmp_path):
    values = np.random.default_rng(3).normal(20.0, 2.0, 100)
    write_run(tmp_path, "alpha", 0, {"psnr": values})
    row = build(tmp_path, metrics=["psnr"]).per_dataset.iloc[0]
    iv = intervals.bootstrap_interval(float(values.mean()), intervals.mean_replicates(
        values, intervals.resample_indices(100, intervals.IMAGE_RESAMPLES)), 100)
    assert row["psnr_lo"] == pytest.approx(iv.low) and row["psnr_hi"] == pytest.approx(iv.high)
    assert row["Images"] == 100 and row["Interval"] == "images, 1 seed"
    # about 1.96 standard errors either side of the mean
    assert (iv.high - iv.low) / 2 == pytest.approx(1.96 * values.std(ddof=1) / 10, rel=0.1)


def test_three_seeds_give_a_t_interval_of_the_seed_means(tmp_path):
    rng = np.random.default_rng(4)
    means = []
    for seed in range(3):
        v = rng.normal(20.0 + seed, 1.0, 50)
        means.append(v.mean())
        write_run(tmp_path, "alpha", seed, {"psnr": v})
    row = build(tmp_path, metrics=["psnr"]).per_dataset.iloc[0]
    iv = intervals.t_interval(means)
    assert row["psnr_lo"] == pytest.approx(iv.low) and row["psnr_hi"] == pytest.approx(iv.high)
    assert row["Interval"] == "t, 3 seeds"


def test_fid_and_kid_of_a_resample_equal_the_evaluators_formulas():
    rng = np.random.default_rng(5)
    orig = rng.normal(size=(40, 16))
    recon = orig + 0.3 * rng.normal(size=orig.shape)
    res = feature_bootstrap.FeatureResampler(recon, orig)
    idx = rng.integers(0, 40, 40)
    assert res.fid(idx) == pytest.approx(
        fid.frechet_distance(*fid.statistics(orig[idx]), *fid.statistics(recon[idx])), rel=1e-6)
    # without repeats, the resample's KID is the evaluator's (all subsets are the whole set below 1000)
    assert res.kid(np.arange(40)) == pytest.approx(fid.kid(orig, recon, subsets=2)[0], rel=1e-9)


def test_rfid_interval_from_stored_features_and_the_cached_reference(tmp_path, monkeypatch):
    monkeypatch.setenv("VQBENCH_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(6)
    n, d = 60, 64  # any width works; 2048 would spend the test in the 2048 x 2048 eigh of the record value
    orig = rng.normal(size=(n, d)).astype(np.float32)
    name = write_reference(tmp_path / "cache", orig)
    for method, noise in (("alpha", 0.2), ("beta", 0.6)):
        recon = (orig + noise * rng.normal(size=orig.shape)).astype(np.float16).astype(np.float32)
        value = fid.frechet_distance(*fid.statistics(orig), *fid.statistics(recon))
        write_run(tmp_path / "out", method, 0, {"psnr": rng.normal(20, 1, n)}, metrics={"fid": value},
                  features=recon, reference=name)
    summary = build(tmp_path / "out", metrics=["fid", "psnr"])
    df = summary.per_dataset.set_index("Method")
    for m in ("alpha", "beta"):
        assert df.loc[m, "fid_lo"] < df.loc[m, "fid"] < df.loc[m, "fid_hi"]
    md = _md_tables(tables.render(summary, "md"))["photos"].set_index("Method")
    assert re.fullmatch(r"\*\*[0-9.]+ ± [0-9.]+†\*\*", md.loc["alpha", "rFID (vs val) ↓"])  # resolved: noise 0.2 vs 0.6
    assert "rFID without ±" not in tables.render(summary, "md")
    # on a machine whose cache lacks the reference entry: no rFID interval, and the note says why
    monkeypatch.setenv("VQBENCH_CACHE", str(tmp_path / "empty"))
    bare = build(tmp_path / "out", metrics=["fid", "psnr"])
    assert bare.per_dataset["fid_lo"].isna().all() and "rFID without ±" in tables.render(bare, "md")
