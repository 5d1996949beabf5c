import pytest
import torch
import torch.nn.functional as F

import methods
from bench.core.errors import UserError
from tests.methods.checks import assert_checkpoint_restores_state, assert_training_reduces_reconstruction_loss, latent


def test_index_is_the_argmax_of_dot_products_and_forward_is_the_hard_code():
    q = methods.create("ibq", 32, 4).train()
    with torch.no_grad():
        q.embedding.weight.normal_()
    z = latent(q).requires_grad_(True)
    out = q(z)
    rows = z.detach().permute(0, 2, 3, 1).reshape(-1, 4)
    assert torch.equal(out.indices.reshape(-1), (rows @ q.embedding.weight.detach().t()).argmax(1))
    torch.testing.assert_close(out.z_q, q.decode_indices(out.indices), rtol=1e-6, atol=1e-6)


def test_every_code_receives_gradient():
    # Plain VQ gives gradient only to the selected codes; IBQ's softmax reaches all of them.
    torch.manual_seed(0)
    ibq = methods.create("ibq", 64, 8).train()
    z = latent(ibq).requires_grad_(True)
    out = ibq(z)
    out.z_q.square().sum().backward()
    g = ibq.embedding.weight.grad
    assert len(out.indices.unique()) < 64 and (g.abs().sum(1) > 0).all()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_double_quantisation_loss():
    q = methods.create("ibq", 16, 4, beta=0.5).train()
    z = latent(q).requires_grad_(True)
    out = q(z)
    d = F.mse_loss(out.z_q.detach(), z.detach())
    # Both halves have the same value forward (z_q equals the hard code): 2 * (1 + beta) * d.
    torch.testing.assert_close(out.loss, 2 * 1.5 * d, rtol=1e-5, atol=1e-7)
    assert set(out.logs) == {"vq", "double_quant"}


def test_optional_entropy_penalty():
    q = methods.create("ibq", 16, 4, entropy_weight=0.1).train()
    assert "entropy" in q(latent(q)).logs


@pytest.mark.parametrize("bad", [dict(beta=-1.0), dict(entropy_temperature=0.0)])
def test_impossible_options_fail_fast(bad):
    with pytest.raises(UserError):
        methods.create("ibq", 16, 4, **bad)


def test_checkpoint_restores_state():
    assert_checkpoint_restores_state("ibq")


@pytest.mark.slow
def test_training_reduces_reconstruction_loss():
    # IBQ starts slowly: codes start uniform in +-1/K and the encoder's reconstruction gradient passes
    # through softmax(z.E) @ E, which is O(1/K^2) at initialisation. Measured: L1 0.546 -> 0.526
    # after 60 steps (the other methods fall by 15-30%), hence the looser bound.
    assert_training_reduces_reconstruction_loss("ibq", factor=0.98)
