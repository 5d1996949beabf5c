"""The shared codebook tricks (methods/codebook_tricks.py) by their definitions; their parity with
vector-quantize-pytorch is in test_references.py, their data-parallel behaviour in test_distributed.py."""
import pytest
import torch

import methods
from bench.core.errors import UserError
from methods.codebook_tricks import kmeans, rotate_to
from tests.methods.checks import assert_checkpoint_restores_state

TRICKS = {"kmeans_init": True, "threshold_ema_dead_code": 1.5, "rotation_trick": True}
NN_METHODS = ["vqgan", "vqgan-ema", "rvq"]


def test_rotation_trick_gives_the_code_and_a_rotated_scaled_gradient():
    torch.manual_seed(0)
    e = torch.randn(5, 6, requires_grad=True)
    q = torch.randn(5, 6)
    out = rotate_to(e, q)
    torch.testing.assert_close(out, q, rtol=1e-5, atol=1e-6)
    g = torch.randn(5, 6)
    (out * g).sum().backward()
    for i in range(5):  # the gradient is (lambda R)^T g, R the rotation taking e's direction onto q's
        u, v = e[i].detach() / e[i].detach().norm(), q[i] / q[i].norm()
        w = (u + v) / (u + v).norm()
        r = torch.eye(6) - 2 * torch.outer(w, w) + 2 * torch.outer(v, u)
        torch.testing.assert_close(r @ r.t(), torch.eye(6), rtol=1e-5, atol=1e-5)  # orthogonal
        torch.testing.assert_close(r @ u, v, rtol=1e-5, atol=1e-6)
        lam = q[i].norm() / e[i].detach().norm()
        torch.testing.assert_close(e.grad[i], lam * r.t() @ g[i], rtol=1e-5, atol=1e-6)


def test_rotation_trick_of_a_zero_latent_is_finite():
    e = torch.zeros(2, 3, requires_grad=True)
    out = rotate_to(e, torch.ones(2, 3))
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(e.grad).all()


def test_kmeans_finds_separated_clusters():
    torch.manual_seed(0)
    centres = torch.tensor([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0]])
    rows = torch.cat([c + 0.1 * torch.randn(50, 2) for c in centres])
    means, counts = kmeans(rows, 3, iters=10)
    order = torch.cdist(centres, means).argmin(1)
    torch.testing.assert_close(means[order], centres, rtol=0, atol=0.1)
    assert sorted(counts.tolist()) == [50.0, 50.0, 50.0]


@pytest.mark.parametrize("name", NN_METHODS)
def test_default_state_dict_has_no_trick_buffers(name):
    plain = methods.create(name, 16, 4).state_dict()
    assert not any("initted" in k or "usage" in k for k in plain), list(plain)


@pytest.mark.parametrize("name", NN_METHODS)
def test_tricks_state_survives_a_checkpoint(name):
    # k-means ran at the first step, usage counts moved, dead codes were replaced: a resumed run
    # continues exactly as an uninterrupted one.
    assert_checkpoint_restores_state(name, k=16, dim=4, steps=3, **TRICKS)


@pytest.mark.parametrize("name", NN_METHODS)
def test_kmeans_runs_once_and_only_in_training(name):
    torch.manual_seed(0)
    q = methods.create(name, 16, 4, kmeans_init=True)
    state = {k: v.clone() for k, v in q.state_dict().items()}
    q.eval()
    with torch.no_grad():
        q(torch.randn(2, q.latent_channels, 4, 4))
    assert all(torch.equal(v, q.state_dict()[k]) for k, v in state.items())  # eval: nothing moved
    q.train()
    q(torch.randn(2, q.latent_channels, 4, 4))
    flags = [v for k, v in q.state_dict().items() if k.endswith("initted")]
    assert flags and all(bool(f) for f in flags)


@pytest.mark.parametrize("name", NN_METHODS)
def test_bad_trick_options_fail_fast(name):
    with pytest.raises(UserError, match="kmeans_iters"):
        methods.create(name, 16, 4, kmeans_iters=0)
    with pytest.raises(UserError, match="threshold_ema_dead_code"):
        methods.create(name, 16, 4, threshold_ema_dead_code=-1.0)


def test_dead_codes_move_onto_encoder_outputs_in_training():
    torch.manual_seed(0)
    q = methods.create("vqgan", 64, 4, threshold_ema_dead_code=1.0).train()
    z = torch.randn(2, 4, 4, 4) * 3
    q(z)
    rows = z.permute(0, 2, 3, 1).reshape(-1, 4)
    codes = q.embedding.weight.detach()
    # Every code was unused (usage starts at 1 and decayed below 1 for the unused): 32 rows took 32 codes.
    on_data = (codes[:, None, :] == rows[None]).all(-1).any(1).sum()
    assert int(on_data) == 32
