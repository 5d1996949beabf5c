import torch
import torch.nn.functional as F

import methods


def _setup(**options):
    torch.manual_seed(0)
    q = methods.create("vqgan", 8, 3, **options)
    z = torch.randn(2, 3, 2, 2)
    return q, z


def test_indices_are_the_nearest_codes():
    q, z = _setup()
    out = q(z)
    rows = z.permute(0, 2, 3, 1).reshape(-1, 3)
    expected = torch.cdist(rows, q.embedding.weight).argmin(1).view(2, 2, 2)
    assert torch.equal(out.indices, expected)


def test_standard_beta_is_on_the_commitment_term():
    q, z = _setup(beta=0.25)
    out = q(z)
    e = q.embedding.weight[out.indices].permute(0, 3, 1, 2)
    d = F.mse_loss(e, z)
    torch.testing.assert_close(out.loss, d + 0.25 * d)
    # Gradients tell the placements apart: the codebook gets the full term, the encoder beta.
    zg = z.clone().requires_grad_(True)
    q.zero_grad()
    q(zg).loss.backward()
    g_code = q.embedding.weight.grad.clone()
    q2, _ = _setup(beta=0.25, legacy=True)
    zg2 = z.clone().requires_grad_(True)
    q2(zg2).loss.backward()
    torch.testing.assert_close(q2.embedding.weight.grad, 0.25 * g_code)
    torch.testing.assert_close(zg2.grad, zg.grad / 0.25)


def test_straight_through_passes_gradient_unchanged():
    q, z = _setup()
    z.requires_grad_(True)
    q(z).z_q.sum().backward()
    torch.testing.assert_close(z.grad, torch.ones_like(z))
