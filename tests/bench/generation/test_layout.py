"""The token layout: raster order, the L indices of a position consecutively, exact round trips."""
import pytest
import torch

from bench.generation.layout import TokenLayout


@pytest.mark.parametrize("shape", [(3, 4, 5), (3, 4, 5, 3), (2, 2, 2, 1)])
def test_round_trip(shape):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 50, shape, generator=g)
    layout = TokenLayout.of(x, 50)
    seq = layout.to_sequence(x)
    assert seq.shape == (shape[0], layout.length) and layout.length == torch.tensor(shape[1:]).prod()
    assert torch.equal(layout.from_sequence(seq), x)


def test_order_is_raster_with_position_indices_consecutive():
    h, w, L = 2, 3, 2
    x = torch.zeros(1, h, w, L, dtype=torch.long)
    for i in range(h):
        for j in range(w):
            for k in range(L):
                x[0, i, j, k] = 100 * i + 10 * j + k
    layout = TokenLayout.of(x, 1000)
    seq = layout.to_sequence(x)[0].tolist()
    assert seq == [0, 1, 10, 11, 20, 21, 100, 101, 110, 111, 120, 121]
    assert [layout.position(t) for t in (0, 1, 2, 7)] == [(0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 1)]
    assert TokenLayout((2, 3), 10).position(4) == (1, 1)


def test_refuses_wrong_shapes_and_tokens_outside_the_vocabulary():
    layout = TokenLayout((2, 2), 8)
    with pytest.raises(ValueError):
        layout.to_sequence(torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError):
        layout.from_sequence(torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="vocabulary"):
        layout.from_sequence(torch.full((1, 4), 8))
    with pytest.raises(ValueError):
        TokenLayout.of(torch.zeros(2, 3, dtype=torch.long), 8)
