import math

import pytest
import torch

import methods
from bench.core.errors import UserError
from tests.methods.checks import assert_checkpoint_restores_state, assert_training_reduces_reconstruction_loss, latent


def test_step_counter_advances_in_training_only_and_drives_the_temperature():
    q = methods.create("gumbel", 16, 4, temp_start=1.0, temp_min=0.1, anneal_steps=4)
    assert q.temperature() == pytest.approx(1.0)
    q.train()
    temps = []
    for _ in range(5):
        temps.append(float(q(latent(q)).logs["temperature"]))
    assert int(q.step) == 5
    expected = [0.1 + 0.45 * (1 + math.cos(math.pi * min(1, s / 4))) for s in range(5)]
    assert temps == pytest.approx(expected)
    assert temps[-1] == pytest.approx(0.1)
    q.eval()
    q(latent(q))
    assert int(q.step) == 5
    assert "step" in dict(q.named_buffers())


def test_eval_is_deterministic_argmax():
    q = methods.create("gumbel", 16, 4).eval()
    z = latent(q)
    a, b = q(z), q(z)
    assert torch.equal(a.indices, b.indices)
    assert torch.equal(a.indices, q.proj(z.permute(0, 2, 3, 1)).argmax(-1))


def test_training_samples_hard_codes():
    torch.manual_seed(0)
    q = methods.create("gumbel", 16, 4).train()
    out = q(latent(q))
    torch.testing.assert_close(out.z_q, q.decode_indices(out.indices), rtol=1e-6, atol=1e-6)


def test_kl_to_the_uniform_prior():
    q = methods.create("gumbel", 16, 4, kl_weight=1.0).eval()
    z = latent(q)
    qy = q.proj(z.permute(0, 2, 3, 1)).softmax(-1)
    expected = (qy * torch.log(qy * 16 + 1e-10)).sum(-1).mean()
    torch.testing.assert_close(q(z).loss, expected)
    with torch.no_grad():  # a uniform posterior has KL 0
        q.proj.weight.zero_(), q.proj.bias.zero_()
    assert abs(float(q(z).loss.detach())) < 1e-6


@pytest.mark.parametrize("bad", [dict(temp_start=0.0), dict(temp_min=2.0), dict(anneal_steps=0), dict(kl_weight=-1.0)])
def test_impossible_options_fail_fast(bad):
    with pytest.raises(UserError):
        methods.create("gumbel", 16, 4, **bad)


def test_checkpoint_restores_the_step_counter():
    assert_checkpoint_restores_state("gumbel", anneal_steps=10)


@pytest.mark.slow
def test_training_reduces_reconstruction_loss():
    assert_training_reduces_reconstruction_loss("gumbel")
