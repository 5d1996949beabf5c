"""bsq by its definition (parity with vector-quantize-pytorch's spherical LFQ is in test_references.py)."""
import math

import pytest
import torch

import methods
from bench.core.errors import UserError
from tests.methods.checks import assert_training_reduces_reconstruction_loss, latent


def test_codes_are_signs_on_the_unit_sphere_and_ignore_the_latent_scale():
    q = methods.create("bsq", 256, 32).eval()
    assert q.latent_channels == 8
    z = latent(q, seed=0)
    out = q(z)
    assert torch.equal(q(z * 7.5).indices, out.indices)
    torch.testing.assert_close(out.z_q.norm(dim=1), torch.ones(2, 4, 4), rtol=0, atol=1e-6)
    torch.testing.assert_close(out.z_q, torch.sign(z) / math.sqrt(8), rtol=0, atol=0)
    bits = (z > 0).long()
    assert torch.equal(out.indices, sum(bits[:, i] << (7 - i) for i in range(8)))


def test_entropies_with_groups_of_one_bit_are_the_paper_approximation():
    torch.manual_seed(0)
    q = methods.create("bsq", 16, 8, inv_temperature=3.0)
    exact = methods.create("bsq", 16, 8, inv_temperature=3.0, entropy_group_size=4)
    u = torch.nn.functional.normalize(torch.randn(100, 4), dim=1)
    ps, cb = q.entropies(u)
    ps_exact, cb_exact = exact.entropies(u)
    # The per-sample entropy factorises exactly over bits; the codebook one is bounded by the bits' sum.
    torch.testing.assert_close(ps, ps_exact, rtol=1e-5, atol=1e-6)
    assert float(cb) >= float(cb_exact) - 1e-6
    # Per bit: p(bit = 1 | u) = sigmoid(4 tau u_i / sqrt(d)).
    p = torch.sigmoid(4 * 3.0 * u / 2.0)
    per_bit = -(p * p.log() + (1 - p) * (1 - p).log())
    torch.testing.assert_close(ps, per_bit.sum(1).mean(), rtol=1e-5, atol=1e-6)
    m = p.mean(0)
    torch.testing.assert_close(cb, (-(m * m.log() + (1 - m) * (1 - m).log())).sum(), rtol=1e-5, atol=1e-6)


def test_bad_sizes_fail_with_nearest_valid_ones():
    with pytest.raises(UserError, match="nearest valid sizes: 512, 1024"):
        methods.create("bsq", 1000, 8)
    with pytest.raises(UserError, match="valid sizes: 1, 2, 4, 8"):
        methods.create("bsq", 256, 8, entropy_group_size=3)


def test_gradient_flows_through_the_normalisation():
    q = methods.create("bsq", 16, 8).train()
    z = latent(q).requires_grad_(True)
    (q(z).z_q * latent(q, seed=5)).sum().backward()
    # The gradient of a function of z / |z| is orthogonal to z.
    radial = (z.grad * z.detach()).sum(1)
    torch.testing.assert_close(radial, torch.zeros_like(radial), rtol=0, atol=1e-5)
    assert z.grad.abs().sum() > 0


@pytest.mark.slow
def test_training_reduces_reconstruction_loss():
    assert_training_reduces_reconstruction_loss("bsq", k=64, steps=60)
