import pytest
import torch

import methods
from bench.core.errors import UserError
from tests.methods.checks import assert_checkpoint_restores_state, assert_training_reduces_reconstruction_loss, latent


def test_codebook_is_frozen_and_only_the_projection_learns():
    q = methods.create("simvq", 64, 8).train()
    assert [n for n, p in q.named_parameters()] == ["proj.weight"]
    assert "frozen_codebook" in dict(q.named_buffers())
    z = latent(q).requires_grad_(True)
    out = q(z)
    out.loss.backward()
    # One step's gradient on W moves every code, also those not selected in this batch.
    g = q.proj.weight.grad
    assert g is not None and g.abs().sum() > 0
    moved = q.frozen_codebook @ g.t()
    unused = torch.ones(64, dtype=torch.bool)
    unused[out.indices.unique()] = False
    assert unused.any() and (moved[unused].abs().sum(1) > 0).all()


def test_indices_are_nearest_to_the_projected_codebook():
    q = methods.create("simvq", 32, 4)
    torch.nn.init.normal_(q.proj.weight)
    z = latent(q)
    rows = z.permute(0, 2, 3, 1).reshape(-1, 4)
    expected = torch.cdist(rows, q.codebook()).argmin(1).view(2, 4, 4)
    assert torch.equal(q(z).indices, expected)


def test_loss_has_beta_on_the_commitment_term():
    q = methods.create("simvq", 32, 4, beta=0.1)
    z = latent(q)
    out = q(z)
    d = ((out.z_q - z) ** 2).mean()
    torch.testing.assert_close(out.loss, d + 0.1 * d)


def test_impossible_options_fail_fast():
    with pytest.raises(UserError, match="beta"):
        methods.create("simvq", 16, 4, beta=-1.0)


def test_checkpoint_restores_the_frozen_codebook():
    assert_checkpoint_restores_state("simvq")


@pytest.mark.slow
def test_training_reduces_reconstruction_loss():
    assert_training_reduces_reconstruction_loss("simvq")
