"""leech: the codebook is exactly the Leech lattice's first shell, and the code search is exact."""
import math

import pytest
import torch

import methods
from methods.leech import KISSING_NUMBER, golay_codewords, leech_minimal_vectors


def test_golay_code_has_the_extended_golay_weight_distribution():
    weights = torch.bincount(golay_codewords().long().sum(1), minlength=25)
    assert {w: int(weights[w]) for w in weights.nonzero().flatten().tolist()} == {0: 1, 8: 759, 12: 2576, 16: 759,
                                                                                24: 1}


def test_the_codebook_is_the_196560_distinct_minimal_vectors():
    v = leech_minimal_vectors()
    assert v.shape == (KISSING_NUMBER, 24) and len(torch.unique(v, dim=0)) == KISSING_NUMBER
    assert set(v.pow(2).sum(1).tolist()) == {32}  # one shell, squared norm 32 (4 x 8) in integer coordinates
    shapes = torch.sort(v.abs(), dim=1, descending=True).values[:, :2]
    counts = {(int(a), int(b)): n for (a, b), n in zip(*torch.unique(shapes, dim=0, return_counts=True))}
    assert counts == {(2, 2): 97_152, (3, 1): 98_304, (4, 4): 1_104}
    # Lattice points: x = m (mod 2) for all coordinates and sum(x) = 4m (mod 8)
    m = v[:, :1] % 2
    assert bool(((v - m) % 2 == 0).all()) and bool((v.sum(1) % 8 == (4 * m[:, 0]) % 8).all())


def test_inner_products_are_those_of_a_kissing_configuration():
    """Between minimal vectors of Λ24 (norm 4), inner products are 0, ±1, ±2 or ±4; x 8 here. So no two
    codes are closer than the shell's radius: the 196,560 spheres touch, never overlap."""
    v = leech_minimal_vectors().double()
    sample = v[torch.randperm(len(v), generator=torch.Generator().manual_seed(0))[:300]]
    dots = (sample @ v.t()).round().long()
    assert set(dots.unique().tolist()) <= {-32, -16, -8, 0, 8, 16, 32}
    assert int((dots == 32).sum()) == len(sample)  # each one only with itself


@pytest.mark.parametrize("spherical", [True, False])
def test_nearest_code_matches_brute_force_on_random_inputs(spherical):
    torch.manual_seed(0)
    q = methods.create("leech", KISSING_NUMBER, 8, blocks=2, radius=1.5, spherical=spherical).eval()
    z = torch.randn(3, 48, 4, 5) * 2
    with torch.no_grad():
        out = q(z)
    rows = z.permute(0, 2, 3, 1).reshape(-1, 24).double()
    dist = torch.cdist(rows, q.codes.double())
    best = dist.min(1)
    chosen = dist.gather(1, out.indices.reshape(-1, 1)).squeeze(1)
    torch.testing.assert_close(chosen, best.values, rtol=0, atol=1e-9)  # the chosen code is a nearest one
    second = dist.scatter(1, best.indices[:, None], math.inf).min(1).values
    clear = second - best.values > 1e-5
    assert clear.sum() > len(rows) // 2 and torch.equal(out.indices.reshape(-1)[clear], best.indices[clear])
    assert out.indices.shape == (3, 4, 5, 2) and float(out.loss) == 0.0
    torch.testing.assert_close(q.codes.norm(dim=1), torch.full((KISSING_NUMBER,), 1.5))


def test_fixed_codebook_declares_its_size_and_bits():
    q = methods.create("leech", 1024, 8, blocks=3)
    assert q.codebook_size == KISSING_NUMBER and q.latent_channels == 72 and not list(q.parameters())
    assert q.index_level_sizes() == (KISSING_NUMBER,) * 3
    assert methods.entry("leech").cls.full_codebook_size(8, q.options) == KISSING_NUMBER
