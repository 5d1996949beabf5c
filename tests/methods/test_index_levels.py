"""`Quantizer.index_level_sizes`: one codebook size per index a position emits, for every registered
method, and the bits per image they give (`Quantizer.bits_per_image`)."""
import math

import pytest
import torch

import methods

K, DIM = 64, 8


@pytest.mark.parametrize("name", methods.available())
def test_one_size_per_index_level(name):
    torch.manual_seed(0)
    q = methods.create(name, K, DIM).eval()
    with torch.no_grad():
        idx = q(torch.randn(1, q.latent_channels, 2, 2)).indices
    sizes = q.index_level_sizes()
    assert len(sizes) == (idx.shape[3] if idx.ndim == 4 else 1)
    assert all(isinstance(s, int) and 1 <= s <= q.codebook_size for s in sizes)


def test_declared_levels_of_the_multi_index_methods():
    assert methods.create("vqgan", K, DIM).index_level_sizes() == (K,)
    assert methods.create("fsq", K, DIM).index_level_sizes() == (K,)
    assert methods.create("rvq", K, DIM, levels=3).index_level_sizes() == (K, K, K)
    assert methods.create("rvq", K, DIM, levels=3, shared_codebook=True).index_level_sizes() == (K, K, K)
    assert methods.create("optvq", K, DIM, heads=2).index_level_sizes() == (K, K)
    vqct = methods.create("vqct", K, DIM, top_k=2)
    (a0, a1), (n0, n1) = vqct.adj_range, vqct.noun_range
    assert vqct.index_level_sizes() == (a1 - a0, a1 - a0, n1 - n0) and a1 - a0 + n1 - n0 == K


def test_bits_per_image_sums_log2_of_each_level_over_the_positions():
    assert methods.create("rvq", K, DIM, levels=3).bits_per_image(4, 5) == pytest.approx(20 * 18.0)
    vqct = methods.create("vqct", K, DIM, top_k=2)
    n_adj, n_noun = vqct.adj_range[1] - vqct.adj_range[0], vqct.noun_range[1] - vqct.noun_range[0]
    assert vqct.bits_per_image(2, 2) == pytest.approx(4 * (2 * math.log2(n_adj) + math.log2(n_noun)))
