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


def test_entropy_in_bits_and_its_ratio_to_log2_k_by_hand():
    # p = (3/4, 1/4) over K = 4: H = 3/4 log2(4/3) + 1/4 log2(4) = 0.811278... bits; log2 K = 2
    s = histogram_stats(torch.tensor([3, 1, 0, 0]))
    bits = 0.75 * math.log2(4 / 3) + 0.25 * 2.0
    assert s[keys.ENTROPY_BITS] == pytest.approx(bits, rel=1e-12)
    assert s[keys.ENTROPY_RATIO] == pytest.approx(bits / 2.0, rel=1e-12)
    assert s[keys.ENTROPY_BITS] == pytest.approx(math.log2(s[keys.PERPLEXITY]), rel=1e-12)


def test_uniform_use_of_all_codes_has_entropy_ratio_one():
    s = histogram_stats(torch.full((8,), 5))
    assert s[keys.ENTROPY_BITS] == pytest.approx(3.0) and s[keys.ENTROPY_RATIO] == pytest.approx(1.0)
    one = histogram_stats(torch.tensor([0, 0, 7, 0]))  # one code used: no information
    assert one[keys.ENTROPY_BITS] == 0.0 and one[keys.ENTROPY_RATIO] == 0.0
    assert histogram_stats(torch.tensor([4]))[keys.ENTROPY_RATIO] is None  # K = 1: log2 K = 0


def test_entropy_per_group_uses_the_group_size():
    u = CodeUsage(6, groups={"adj": (0, 2), "noun": (2, 6)})
    u.update(torch.tensor([0, 1, 1, 1, 2, 2, 3, 4]))  # adj: (1, 3) of 2 codes; noun: (2, 1, 1, 0) of 4
    s = u.stats()
    adj = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))
    noun = -(0.5 * math.log2(0.5) + 2 * 0.25 * math.log2(0.25))
    assert s["entropy_bits_adj"] == pytest.approx(adj) and s["entropy_ratio_adj"] == pytest.approx(adj / 1.0)
    assert s["entropy_bits_noun"] == pytest.approx(noun) and s["entropy_ratio_noun"] == pytest.approx(noun / 2.0)
    total = [1, 3, 2, 1, 1, 0]
    h = -sum(c / 8 * math.log2(c / 8) for c in total if c)
    assert s[keys.ENTROPY_BITS] == pytest.approx(h) and s[keys.ENTROPY_RATIO] == pytest.approx(h / math.log2(6))


def test_entropy_metrics_are_declared_in_the_registry():
    from bench.evaluation.metrics.registry import CODES, spec

    for key in (keys.ENTROPY_BITS, keys.ENTROPY_RATIO):
        m = spec(key)
        assert m.key == key and m.reads == CODES and m.accumulator is not None
    assert spec("entropy_ratio_noun").label.endswith("(noun)") and spec(keys.ENTROPY_RATIO).better == "higher"


def test_entropy_is_registered_beside_utilisation_and_perplexity_for_tables_and_groups():
    from bench.evaluation.metrics.registry import CODES, HIGHER, load_all, spec

    registry = load_all()
    for key in (keys.UTILIZATION, keys.PERPLEXITY, keys.ENTROPY_BITS, keys.ENTROPY_RATIO):
        assert key in registry and registry.get(key).reads == CODES
        # one accumulator for all usage metrics: the evaluator builds one histogram for all of them
        assert registry.get(key).accumulator is registry.get(keys.UTILIZATION).accumulator
    assert spec(keys.ENTROPY_BITS).better is None  # bits grow with K: no best across codebook sizes
    assert spec(keys.ENTROPY_RATIO).better == HIGHER and spec(keys.ENTROPY_RATIO).decimals == 3
    assert spec("entropy_ratio_noun").label == "Entropy / log2 K (noun)"  # VQCT's groups, as for utilisation


def test_grouped_entropy_is_each_groups_own_histogram():
    u = CodeUsage(6, groups={"adj": (0, 2), "noun": (2, 6)})
    u.update(torch.tensor([0, 1, 2, 2, 2, 2]))  # adj: 0 and 1 once each; noun: code 2 only
    s = u.stats()
    assert s["entropy_bits_adj"] == pytest.approx(1.0) and s["entropy_ratio_adj"] == pytest.approx(1.0)
    assert s["entropy_bits_noun"] == 0.0 and s["entropy_ratio_noun"] == 0.0
