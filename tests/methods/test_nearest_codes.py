"""The blocked nearest-code search gives the brute-force answer whatever the block size, and its
block stays within the memory cap."""
import pytest
import torch

import methods.base as base


def _small_blocks(monkeypatch, rows: int) -> None:
    monkeypatch.setattr(base, "_CPU_BLOCK_ELEMENTS", 1)
    monkeypatch.setattr(base, "_CPU_MIN_ROWS", rows)
    monkeypatch.setattr(base, "_CPU_MAX_ROWS", rows)


@pytest.mark.parametrize("rows", [1, 7, 4096])
@pytest.mark.parametrize("k", [1, 2, 3, 6])  # 6 > _REPEATED_MAX_K: the topk path
def test_matches_brute_force(monkeypatch, rows, k):
    _small_blocks(monkeypatch, rows)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(203, 16, generator=g)
    e = torch.randn(50, 16, generator=g)
    ours = base.nearest_codes(x, e, k=k)
    ref = torch.cdist(x.double(), e.double()).topk(k, dim=1, largest=False).indices
    assert ours.shape == (203, k) and ours.is_contiguous()
    assert torch.equal(ours, ref)


@pytest.mark.parametrize("tile", [16, 64])
def test_code_tiles_with_a_running_maximum_match_brute_force(monkeypatch, tile):
    monkeypatch.setattr(base, "_CPU_CODE_TILE", tile)
    monkeypatch.setattr(base, "_CPU_TILED_ABOVE", 2)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(300, 8, generator=g)
    e = torch.randn(1000, 8, generator=g)
    e[700] = e[5]  # the same code in a later tile: the first index must keep the tie
    ours = base.nearest_codes(x, e)[:, 0]
    assert torch.equal(ours, torch.cdist(x.double(), e.double()).argmin(1))
    assert torch.equal(base.nearest_codes(e[5:6] + 1e-4, e)[:, 0], torch.tensor([5]))


def test_a_tie_goes_to_the_first_code():
    # Codes 1 and 3 are the same vector: every row nearest to it must get index 1, as argmin would.
    e = torch.tensor([[5.0, 5.0], [0.0, 1.0], [-5.0, -5.0], [0.0, 1.0]])
    x = torch.tensor([[0.0, 0.9], [0.1, 1.2]])
    assert base.nearest_codes(x, e)[:, 0].tolist() == [1, 1]
    assert base.nearest_codes(x, e, k=2).tolist() == [[1, 3], [1, 3]]


def test_block_rows_respect_the_memory_cap():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    cap = base._MAX_BLOCK_ELEMENTS
    for device in (cpu, cuda):
        for n, k in [(65536, 65536), (10, 1 << 20), (1 << 20, 1), (5, 16)]:
            rows = base.search_block_rows(n, k, device)
            assert 1 <= rows <= n
            assert rows * k <= max(cap, k)  # one row of a codebook larger than the cap is the minimum
    # The 65,536 x 65,536 stress shape on the CPU: a small cache-sized block, not the 16 GiB matrix.
    assert base.search_block_rows(65536, 65536, cpu) * 65536 * 4 <= 64 * 2**20


def test_the_block_is_what_the_product_writes(monkeypatch):
    seen = []
    real_mm = torch.mm

    def spy(*args, **kwargs):
        seen.append(kwargs["out"].numel())
        return real_mm(*args, **kwargs)

    _small_blocks(monkeypatch, 10)
    monkeypatch.setattr(torch, "mm", spy)
    base.nearest_codes(torch.randn(500, 4), torch.randn(100, 4))
    assert seen and max(seen) <= 10 * base.padded_codes(100) and len(seen) == 50


@pytest.mark.parametrize("k", [1, 20, 50, 739, 1024])
def test_padded_width_is_a_round_number_close_to_k(k):
    p = base.padded_codes(k)
    assert p >= k and (p == k or p % 16 == 0) and p <= max(k * 1.05, k + 15)


def test_straight_through_value_is_q_and_gradient_goes_to_z():
    z = torch.randn(2, 3, 4, 4, requires_grad=True)
    codes = torch.randn(2, 3, 4, 4, requires_grad=True)
    q = codes * 1.0
    out = base.straight_through(z, q)
    assert torch.equal(out, q)
    g = torch.randn_like(out)
    (out * g).sum().backward()
    assert torch.equal(z.grad, g) and codes.grad is None
    assert not base.straight_through(z.detach(), q).requires_grad
