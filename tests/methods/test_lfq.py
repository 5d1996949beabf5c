import math

import pytest
import torch

import methods
from bench.core.errors import UserError
from tests.methods.checks import assert_checkpoint_restores_state, assert_training_reduces_reconstruction_loss, latent


def test_k_maps_to_log2_channels_and_dim_is_not_used():
    for k in (2, 64, 1024):
        q = methods.create("lfq", k, 32)
        assert q.latent_channels == int(math.log2(k)) and q.codebook_size == k


@pytest.mark.parametrize("k, near", [(1000, "512, 1024"), (3, "2, 4"), (1, "2")])
def test_impossible_k_names_the_nearest_powers_of_two(k, near):
    with pytest.raises(UserError, match=f"power of two.*nearest valid sizes: {near}$"):
        methods.create("lfq", k, 8)


def test_sign_quantisation_and_big_endian_index():
    q = methods.create("lfq", 8, 4).eval()
    z = torch.tensor([0.3, -2.0, 0.1]).view(1, 3, 1, 1)
    out = q(z)
    assert out.indices.item() == 0b101
    assert torch.equal(out.z_q.flatten(), torch.tensor([1.0, -1.0, 1.0]))


def test_every_index_decodes_to_its_own_corner():
    q = methods.create("lfq", 64, 4).eval()
    idx = torch.arange(64).view(1, 8, 8)
    codes = q.decode_indices(idx)
    assert torch.equal(q(codes).indices, idx)


def test_entropy_loss_is_per_sample_minus_codebook_entropy():
    q = methods.create("lfq", 16, 4, entropy_weight=1.0, commitment_weight=0.0).train()
    z = latent(q, scale=0.05)
    out = q(z)
    rows = z.permute(0, 2, 3, 1).reshape(-1, 4)
    p = torch.softmax(2 * rows @ q.codebook.t() / 0.01, dim=1)
    h = lambda t: -(t * t.clamp(min=1e-5).log()).sum(-1)
    torch.testing.assert_close(out.loss, h(p).mean() - h(p.mean(0)))
    # Confident, spread assignments give a lower loss than this soft, random batch.
    q.eval()
    assert "entropy" not in q(z).logs


def test_impossible_options_fail_fast():
    with pytest.raises(UserError, match="temperature"):
        methods.create("lfq", 16, 4, temperature=0.0)


def test_checkpoint_restores_state():
    assert_checkpoint_restores_state("lfq")


@pytest.mark.slow
def test_training_reduces_reconstruction_loss():
    assert_training_reduces_reconstruction_loss("lfq")
