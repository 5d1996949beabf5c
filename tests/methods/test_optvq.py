"""optvq by its definition (vector-quantize-pytorch has no OptVQ; the released code is not on PyPI)."""
import pytest
import torch

import methods
from bench.core.errors import UserError
from methods.optvq import sinkhorn
from tests.methods.checks import assert_training_reduces_reconstruction_loss, latent


def _reference_plan(cost: torch.Tensor, iters: int, eps: float) -> torch.Tensor:
    """Sinkhorn-Knopp written from the algorithm: P = diag(a) exp(-eps C) diag(b) with alternating
    scalings so that codes get mass 1/K each and rows 1/N each; returned with rows summing to 1."""
    kernel = torch.exp(-eps * cost).double()
    n, k = kernel.shape
    a = torch.ones(n, dtype=torch.float64)
    for _ in range(iters):
        b = (1.0 / k) / (kernel * a[:, None]).sum(0)
        a = (1.0 / n) / (kernel * b[None, :]).sum(1)
    return (a[:, None] * kernel * b[None, :] * n).float()


def test_sinkhorn_is_the_alternating_scaling_with_uniform_marginals():
    torch.manual_seed(0)
    cost = torch.rand(40, 8) * 3
    plan = sinkhorn(cost.clone(), iters=50, epsilon=2.0)
    torch.testing.assert_close(plan, _reference_plan(cost, 50, 2.0), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(plan.sum(1), torch.ones(40), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(plan.sum(0), torch.full((8,), 40 / 8), rtol=1e-3, atol=1e-3)


def test_transport_spreads_latents_that_nearest_neighbour_sends_to_one_code():
    torch.manual_seed(0)
    q = methods.create("optvq", 16, 4, use_proj=False)
    with torch.no_grad():
        q.embedding.weight.copy_(torch.randn(16, 4))
        q.embedding.weight[0] = 0.0  # one code at the origin, the latents around it
    z = torch.randn(4, 4, 8, 8) * 0.05
    q.eval()
    assert q(z).indices.unique().tolist() == [0]  # nearest neighbour: index collapse
    q.train()
    used = q(z).indices.unique()
    assert len(used) == 16  # the plan gives every code a share


def test_indices_and_exact_decoding_with_heads_and_both_eval_assignments():
    for assignment in ("nearest", "sinkhorn"):
        torch.manual_seed(0)
        q = methods.create("optvq", 32, 8, heads=4, eval_assignment=assignment).eval()
        z = latent(q, seed=1)
        with torch.no_grad():
            out = q(z)
            assert out.indices.shape == (2, 4, 4, 4)
            torch.testing.assert_close(q.decode_indices(out.indices), out.z_q, rtol=0, atol=0)
        # Head h quantises channels [2h, 2h + 2).
        codes = q.codebook().detach()
        torch.testing.assert_close(out.z_q[:, 2:4].permute(0, 2, 3, 1), codes[out.indices[..., 1]], rtol=0, atol=0)


def test_eval_tokens_depend_on_the_batch_only_with_sinkhorn():
    torch.manual_seed(0)
    nearest = methods.create("optvq", 16, 4).eval()
    transport = methods.create("optvq", 16, 4, eval_assignment="sinkhorn").eval()
    transport.load_state_dict(nearest.state_dict())
    z = latent(nearest, seed=2, b=4)
    with torch.no_grad():
        assert torch.equal(nearest(z).indices[:1], nearest(z[:1]).indices)
        assert not torch.equal(transport(z).indices[:1], transport(z[:1]).indices)


def test_released_loss_weights_commitment_one_and_codebook_beta():
    torch.manual_seed(0)
    q = methods.create("optvq", 16, 4, beta=0.5).train()
    z = latent(q, seed=3).requires_grad_(True)
    out = q(z)
    torch.testing.assert_close(out.loss, out.logs["commitment"] + 0.5 * out.logs["codebook"])


def test_bad_options_fail_fast():
    with pytest.raises(UserError, match="heads must divide the latent dimension 8; valid: 1, 2, 4, 8"):
        methods.create("optvq", 16, 8, heads=3)
    with pytest.raises(UserError, match="normalize"):
        methods.create("optvq", 16, 8, normalize="std")
    with pytest.raises(UserError, match="eval_assignment"):
        methods.create("optvq", 16, 8, eval_assignment="argmax")


@pytest.mark.slow
def test_training_reduces_reconstruction_loss():
    result = assert_training_reduces_reconstruction_loss("optvq", k=64, steps=60)
    assert len(result["indices"].unique()) > 16
