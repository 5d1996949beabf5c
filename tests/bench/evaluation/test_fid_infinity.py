"""FID-infinity (Chong & Forsyth 2020): the fit, the subsamples, both routes of a subsample's FID, and
Gaussian features whose true Frechet distance is known in closed form: FID at n = 252 is biased,
FID-infinity is not, and its bootstrap interval covers the truth at about 95% (slow; a fast subset)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from bench.evaluation.metrics import fid, fid_infinity
from bench.reporting import fid_infinity_interval, intervals

N, D = 252, 16  # the default benchmark's image count; a dimension well below it (the 1/N regime)


def _gaussians(draw: int, n: int = N, d: int = D) -> tuple[np.ndarray, np.ndarray, float]:
    """(reconstructions, originals, true Frechet distance): originals ~ N(0, diag v), reconstructions
    a x + s + noise (diagonal), so both are Gaussian with diagonal covariances and the distance is
    sum (s^2) + sum (sqrt v_o - sqrt v_r)^2 in closed form."""
    setup = np.random.default_rng(1)
    var_o, noise = setup.uniform(0.5, 2.0, d), setup.uniform(0.2, 0.6, d)
    a, s = 0.8, 0.1
    var_r = a * a * var_o + noise ** 2
    truth = float(d * s * s + ((np.sqrt(var_o) - np.sqrt(var_r)) ** 2).sum())
    rng = np.random.default_rng([100, draw])
    o = rng.normal(size=(n, d)) * np.sqrt(var_o)
    r = a * o + s + rng.normal(size=(n, d)) * noise
    return r, o, truth


def test_the_fit_recovers_an_exact_line_in_one_over_n():
    sizes = fid_infinity.sizes(252)
    assert sizes[0] == math.ceil(fid_infinity.MIN_FRACTION * 252) and sizes[-1] == 252
    assert len(sizes) == fid_infinity.POINTS
    value, slope = fid_infinity.fit(sizes, 3.5 + 120.0 / sizes)
    assert value == pytest.approx(3.5, abs=1e-9) and slope == pytest.approx(120.0, rel=1e-9)
    est = fid_infinity.estimate(lambda rows: 3.5 + 120.0 / len(rows), 252)
    assert est.value == pytest.approx(3.5, abs=1e-9) and est.sizes == tuple(sizes)


def test_subsamples_are_fixed_distinct_and_without_replacement():
    a, b = fid_infinity.subsamples(100), fid_infinity.subsamples(100)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    for rows, size in zip(a, fid_infinity.sizes(100)):
        assert len(rows) == size == len(np.unique(rows)) and rows.max() < 100
    assert len(fid_infinity.sizes(5)) == 3  # 3, 4, 5: tiny sets keep distinct sizes
    with pytest.raises(ValueError, match="at least"):
        fid_infinity.sizes(3)


def test_both_routes_equal_the_evaluators_frechet_distance():
    rng = np.random.default_rng(3)
    o = rng.normal(size=(40, 64))  # fewer images than dimensions: the Gram route
    r = o + 0.4 * rng.normal(size=o.shape)
    rows = rng.integers(0, 40, 30)
    expected = fid.frechet_distance(*fid.statistics(o[rows]), *fid.statistics(r[rows]))
    assert fid_infinity.paired_fid_of(r, o)(rows) == pytest.approx(expected, rel=1e-6)
    assert fid_infinity._direct_fid(o[rows], r[rows]) == pytest.approx(expected, rel=1e-10)
    small_o, small_r = o[:, :8], r[:, :8]  # more images than dimensions: the direct route
    expected = fid.frechet_distance(*fid.statistics(small_o[rows]), *fid.statistics(small_r[rows]))
    assert fid_infinity.paired_fid_of(small_r, small_o)(rows) == pytest.approx(expected, rel=1e-10)
    # generated against a fixed reference, both routes
    ref = rng.normal(size=(50, 64))
    mu, sigma = fid.statistics(ref)
    g = ref[:40] + 0.3
    expected = fid.frechet_distance(mu, sigma, *fid.statistics(g[rows]))
    assert fid_infinity.generated_fid_of(g, mu, sigma, ref)(rows) == pytest.approx(expected, rel=1e-6)
    # without the reference's features (--fid-reference stats:PATH) the Gram route still serves
    assert fid_infinity.generated_fid_of(g, mu, sigma, None)(rows) == pytest.approx(expected, rel=1e-6)
    mu8, sigma8 = fid.statistics(ref[:, :8])  # more images than dimensions: the direct route
    expected = fid.frechet_distance(mu8, sigma8, *fid.statistics(g[rows, :8]))
    assert fid_infinity.generated_fid_of(g[:, :8], mu8, sigma8, None)(rows) == pytest.approx(expected, rel=1e-10)
    est = fid_infinity.against_reference(g, mu, sigma, ref)
    assert est.value == pytest.approx(fid_infinity.fit(est.sizes, est.fids)[0])


def test_gaussian_fid_at_252_is_biased_and_fid_infinity_is_not():
    """20 draws: FID from 252 images sits well above the true distance; FID-infinity within 3 standard
    errors of it (measured over 100 draws: truth 0.523, FID_252 0.637, FID-infinity 0.514)."""
    at_n, inf = [], []
    for draw in range(20):
        r, o, truth = _gaussians(draw)
        est = fid_infinity.paired(r, o)
        assert est.sizes[-1] == N
        at_n.append(est.fids[-1])
        inf.append(est.value)
    at_n, inf = np.array(at_n), np.array(inf)
    se = lambda v: v.std(ddof=1) / math.sqrt(len(v))  # noqa: E731
    assert at_n.mean() - truth > 5 * se(at_n)
    assert abs(inf.mean() - truth) < 3 * se(inf)
    assert abs(inf.mean() - truth) < 0.25 * (at_n.mean() - truth)


def _coverage(draws: int) -> tuple[int, list[float]]:
    hits, widths = 0, []
    idx = fid_infinity_interval.indices(N)
    for draw in range(draws):
        r, o, truth = _gaussians(draw)
        value = fid_infinity.paired(r, o).value
        lo, hi = intervals.shifted_percentiles(value, fid_infinity.replicates(fid_infinity.paired_fid_of(r, o), idx))
        hits += lo <= truth <= hi
        widths.append(hi - lo)
    return hits, widths


def test_fid_infinity_interval_covers_the_truth_fast_subset():
    """6 draws (the slow test has 100): at least 5 intervals hold the true distance."""
    hits, widths = _coverage(6)
    assert hits >= 5 and all(w > 0 for w in widths)


@pytest.mark.slow
def test_fid_infinity_interval_covers_the_truth_at_about_95_percent():
    """100 draws; measured 94 of 100 (the interval's mean width 0.22, 4.3 sd of FID-infinity over draws)."""
    hits, _ = _coverage(100)
    assert abs(hits / 100 - 0.95) <= 3 * math.sqrt(0.95 * 0.05 / 100) + 0.01
