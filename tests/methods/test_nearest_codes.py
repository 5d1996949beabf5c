"""The chunked nearest-code search gives the brute-force answer whatever the chunk size."""
import pytest
import torch

import methods.base as base


@pytest.mark.parametrize("chunk_elements", [1, 7 * 50, 1 << 27])
@pytest.mark.parametrize("k", [1, 3])
def test_matches_brute_force(monkeypatch, chunk_elements, k):
    monkeypatch.setattr(base, "_SEARCH_CHUNK_ELEMENTS", chunk_elements)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(203, 16, generator=g)
    e = torch.randn(50, 16, generator=g)
    ours = base.nearest_codes(x, e, k=k)
    ref = torch.cdist(x.double(), e.double()).topk(k, dim=1, largest=False).indices
    assert torch.equal(ours, ref)


def test_chunk_rows_bound_the_block(monkeypatch):
    # With K codes, a chunk holds _SEARCH_CHUNK_ELEMENTS // K rows: the distance block never exceeds it.
    seen = []
    real_addmm = torch.addmm

    def spy(*args, **kwargs):
        seen.append(kwargs["out"].numel())
        return real_addmm(*args, **kwargs)

    monkeypatch.setattr(base, "_SEARCH_CHUNK_ELEMENTS", 1000)
    monkeypatch.setattr(torch, "addmm", spy)
    base.nearest_codes(torch.randn(500, 4), torch.randn(100, 4))
    assert seen and max(seen) <= 1000 and len(seen) == 50
