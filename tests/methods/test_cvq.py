import pytest
import torch

import methods
from bench.core.errors import UserError
from tests.methods.checks import assert_checkpoint_restores_state, assert_training_reduces_reconstruction_loss, latent


def test_cosine_search_picks_the_code_with_the_closest_angle():
    q = methods.create("cvq", 8, 3).eval()
    with torch.no_grad():
        q.embedding.weight.copy_(torch.randn(8, 3) * torch.arange(1, 9).view(8, 1))
    z = latent(q)
    rows = torch.nn.functional.normalize(z.permute(0, 2, 3, 1).reshape(-1, 3), dim=1)
    expected = (rows @ torch.nn.functional.normalize(q.embedding.weight, dim=1).t()).argmax(1)
    assert torch.equal(q(z).indices.reshape(-1), expected)


def test_unused_codes_are_reanchored_to_features_and_used_codes_stay():
    torch.manual_seed(0)
    q = methods.create("cvq", 16, 4, distance="l2", anchor="closest").train()
    with torch.no_grad():  # codes 8..15 far away: never the nearest, so never used
        q.embedding.weight[8:] = torch.randn(8, 4) * 100
    z = latent(q, b=4, hw=8)
    before = q.embedding.weight.detach().clone()
    out = q(z)
    used = torch.zeros(16, dtype=torch.bool)
    used[out.indices.unique()] = True
    assert not used[8:].any() and used[:8].any()
    rows = z.permute(0, 2, 3, 1).reshape(-1, 4)
    after = q.embedding.weight.detach()
    # alpha = exp(-0 - 1e-3) for an unused code: it lands (almost) on its closest feature.
    assert (torch.cdist(after[8:], rows).min(1).values < 0.5).all()
    assert (torch.cdist(before[8:], rows).min(1).values > 10).all()
    # A code used at least at the uniform rate (n_k >= N / K) has alpha <= exp(-10): it stays put.
    counts = torch.bincount(out.indices.reshape(-1), minlength=16)
    busy = counts >= rows.shape[0] / 16
    assert busy.any()
    torch.testing.assert_close(after[busy], before[busy], rtol=0, atol=1e-3)
    torch.testing.assert_close(q.embed_prob.sum(), torch.tensor(0.01))  # (1 - decay) * total usage 1


def test_running_usage_is_a_buffer_updated_only_in_training():
    q = methods.create("cvq", 16, 4)
    assert "embed_prob" in dict(q.named_buffers())
    q.eval()
    q(latent(q))
    assert float(q.embed_prob.sum()) == 0.0


@pytest.mark.parametrize("bad", [dict(distance="dot"), dict(anchor="pool"), dict(decay=0.0)])
def test_impossible_options_fail_fast(bad):
    with pytest.raises(UserError):
        methods.create("cvq", 16, 4, **bad)


def test_checkpoint_restores_the_running_usage():
    assert_checkpoint_restores_state("cvq", anchor="closest")
    assert_checkpoint_restores_state("cvq", distance="l2")  # probrandom: same RNG state, same samples


@pytest.mark.slow
def test_training_reduces_reconstruction_loss():
    assert_training_reduces_reconstruction_loss("cvq")
