"""The ViT-VQGAN options of `vqgan`: l2-normalised codes and a lower codebook dimension."""
import pytest
import torch
import torch.nn.functional as F

import methods
from bench.core.errors import UserError
from tests.methods.checks import assert_checkpoint_restores_state, latent


def test_defaults_are_off_and_leave_the_state_dict_unchanged():
    q = methods.create("vqgan", 16, 8)
    assert q.options.l2_normalize is False and q.options.codebook_dim is None
    assert list(q.state_dict()) == ["embedding.weight"]


def test_l2_normalised_codes_pick_the_closest_angle_and_output_unit_vectors():
    torch.manual_seed(0)
    q = methods.create("vqgan", 16, 4, l2_normalize=True).eval()
    with torch.no_grad():
        q.embedding.weight.copy_(torch.randn(16, 4) * torch.linspace(0.1, 10, 16).view(16, 1))
    z = latent(q, scale=3.0)
    out = q(z)
    rows = F.normalize(z.permute(0, 2, 3, 1).reshape(-1, 4), dim=1)
    cos = rows @ F.normalize(q.embedding.weight, dim=1).t()
    assert torch.equal(out.indices.reshape(-1), cos.argmax(1))
    torch.testing.assert_close(out.z_q.norm(dim=1), torch.ones(2, 4, 4))
    torch.testing.assert_close(q.decode_indices(out.indices), out.z_q, rtol=1e-6, atol=1e-6)


def test_factorised_codes_search_in_the_lower_dimension():
    torch.manual_seed(0)
    q = methods.create("vqgan", 32, 16, codebook_dim=4).train()
    assert q.embedding.weight.shape == (32, 4) and q.latent_channels == 16
    z = latent(q).requires_grad_(True)
    out = q(z)
    low = q.project_in(z.detach().permute(0, 2, 3, 1).reshape(-1, 16))
    assert torch.equal(out.indices.reshape(-1), torch.cdist(low, q.embedding.weight).argmin(1))
    assert out.z_q.shape == z.shape
    (out.z_q.sum() + out.loss).backward()
    assert q.project_in.weight.grad.abs().sum() > 0 and q.project_out.weight.grad.abs().sum() > 0
    assert z.grad.abs().sum() > 0


def test_both_together_decode_exactly():
    q = methods.create("vqgan", 32, 16, codebook_dim=4, l2_normalize=True).eval()
    with torch.no_grad():
        out = q(latent(q))
        torch.testing.assert_close(q.decode_indices(out.indices), out.z_q, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("bad", [0, 17])
def test_codebook_dim_out_of_range_fails_fast(bad):
    with pytest.raises(UserError, match="codebook_dim"):
        methods.create("vqgan", 32, 16, codebook_dim=bad)


def test_checkpoint_restores_the_projections():
    assert_checkpoint_restores_state("vqgan", dim=8, codebook_dim=4, l2_normalize=True)
