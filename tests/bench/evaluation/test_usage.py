"""Code-usage statistics on hand-made indices with known answers."""
import math

import pytest
import torch

from bench.evaluation.metrics import keys
from bench.evaluation.metrics.usage import CodeUsage, histogram_stats


def test_known_histogram():
    u = CodeUsage(8)
    u.update(torch.tensor([[0, 0], [1, 1]]))  # two codes, equally used
    s = u.stats()
    assert s[keys.UTILIZATION] == pytest.approx(2 / 8)
    assert s[keys.PERPLEXITY] == pytest.approx(2.0)
    assert s[keys.DEAD_CODES] == 6


def test_uniform_usage_has_perplexity_k():
    u = CodeUsage(16)
    u.update(torch.arange(16).repeat(3))
    s = u.stats()
    assert s[keys.UTILIZATION] == 1.0 and s[keys.DEAD_CODES] == 0
    assert s[keys.PERPLEXITY] == pytest.approx(16.0)


def test_accumulates_across_batches_not_per_batch():
    # Each batch uses one code; over the split, four codes are used. A per-batch average would say 1/4.
    u = CodeUsage(4)
    for code in range(4):
        u.update(torch.full((2, 3, 3), code))
    assert u.stats()[keys.UTILIZATION] == 1.0


def test_skewed_perplexity():
    counts = torch.tensor([3, 1, 0, 0])
    p = torch.tensor([0.75, 0.25])
    expected = math.exp(float(-(p * p.log()).sum()))
    assert histogram_stats(counts)[keys.PERPLEXITY] == pytest.approx(expected)


def test_groups_are_reported_separately():
    u = CodeUsage(6, groups={"adj": (0, 2), "noun": (2, 6)})
    u.update(torch.tensor([[[0, 2], [0, 3]]]))  # (B, H, W, L) with two codes per position
    s = u.stats()
    assert s[keys.UTILIZATION] == pytest.approx(3 / 6)
    assert s["utilization_adj"] == pytest.approx(1 / 2)
    assert s["utilization_noun"] == pytest.approx(2 / 4)
    assert s["dead_codes_noun"] == 2
    assert s["perplexity_adj"] == pytest.approx(1.0)


def test_out_of_range_indices_are_an_error():
    with pytest.raises(ValueError, match="out of range"):
        CodeUsage(4).update(torch.tensor([4]))


def test_empty_histogram():
    s = CodeUsage(4).stats()
    assert s[keys.UTILIZATION] == 0.0 and s[keys.DEAD_CODES] == 4
