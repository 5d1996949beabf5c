import pytest
import torch

import methods
from bench.core.errors import UserError
from tests.methods.checks import assert_checkpoint_restores_state, assert_training_reduces_reconstruction_loss, latent


def test_codebook_is_the_ema_of_assigned_vectors_with_laplace_smoothing():
    torch.manual_seed(0)
    q = methods.create("vqgan-ema", 4, 2, decay=0.9, eps=1e-5).train()
    e0, n0, m0 = q.embed.clone(), q.cluster_size.clone(), q.embed_avg.clone()
    z = latent(q, seed=1, scale=0.01)
    out = q(z)
    rows = z.permute(0, 2, 3, 1).reshape(-1, 2)
    idx = out.indices.reshape(-1)
    counts = torch.bincount(idx, minlength=4).float()
    sums = torch.zeros(4, 2).index_add_(0, idx, rows)
    n = 0.9 * n0 + 0.1 * counts
    m = 0.9 * m0 + 0.1 * sums
    smoothed = (n + 1e-5) / (n.sum() + 4 * 1e-5) * n.sum()
    torch.testing.assert_close(q.cluster_size, n)
    torch.testing.assert_close(q.embed_avg, m)
    torch.testing.assert_close(q.embed, m / smoothed.unsqueeze(1))
    # The output used the codes from before the update.
    torch.testing.assert_close(out.z_q, e0[out.indices].permute(0, 3, 1, 2))


def test_no_update_in_eval_and_no_gradient_to_the_codebook():
    q = methods.create("vqgan-ema", 16, 4).eval()
    e0 = q.embed.clone()
    q(latent(q))
    assert torch.equal(q.embed, e0)
    assert not any(p.requires_grad for p in q.parameters())  # the codebook is a buffer, not a parameter


def test_loss_is_commitment_only():
    q = methods.create("vqgan-ema", 16, 4, beta=0.5).train()
    z = latent(q).requires_grad_(True)
    out = q(z)
    e = out.z_q.detach()
    torch.testing.assert_close(out.loss, 0.5 * ((z - e) ** 2).mean())
    assert set(out.logs) == {"commitment"}


def test_impossible_options_fail_fast():
    with pytest.raises(UserError, match="decay"):
        methods.create("vqgan-ema", 16, 4, decay=1.0)
    with pytest.raises(UserError, match="eps"):
        methods.create("vqgan-ema", 16, 4, eps=0.0)


def test_checkpoint_restores_the_ema_state():
    assert_checkpoint_restores_state("vqgan-ema")


@pytest.mark.slow
def test_training_reduces_reconstruction_loss():
    assert_training_reduces_reconstruction_loss("vqgan-ema")
