"""pq: each group of channels is quantised with its own codebook, and the indices decode exactly."""
import pytest
import torch

import methods
from bench.core.errors import UserError


def test_each_group_takes_the_nearest_code_of_its_own_codebook():
    torch.manual_seed(0)
    q = methods.create("pq", 16, 12, groups=3).eval()
    z = torch.randn(2, 12, 3, 3)
    with torch.no_grad():
        out = q(z)
    assert out.indices.shape == (2, 3, 3, 3) and q.codebook_size == 48
    rows = z.permute(0, 2, 3, 1).reshape(-1, 3, 4)
    for g in range(3):
        brute = torch.cdist(rows[:, g], q.codebooks[g].detach()).argmin(1)
        assert torch.equal(out.indices.reshape(-1, 3)[:, g], brute + 16 * g)  # global index: g * K + j
    assert q.code_groups == {"group0": (0, 16), "group1": (16, 32), "group2": (32, 48)}
    assert q.index_level_sizes() == (16, 16, 16)
    torch.testing.assert_close(q.decode_indices(out.indices), out.z_q, rtol=0, atol=0)


def test_codebooks_learn_from_the_codebook_loss_and_the_encoder_from_straight_through():
    torch.manual_seed(0)
    q = methods.create("pq", 8, 4, groups=2).train()
    z = torch.randn(2, 4, 2, 2, requires_grad=True)
    out = q(z)
    (out.z_q.sum() + out.loss).backward()
    assert q.codebooks.grad is not None and q.codebooks.grad.abs().sum() > 0
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_groups_that_do_not_divide_the_latent_are_refused():
    with pytest.raises(UserError, match="groups must divide the latent dimension 8"):
        methods.create("pq", 16, 8, groups=3)


def test_same_codes_as_vector_quantize_pytorch_with_a_codebook_per_head():
    """The speed benchmark's peer (bench.speed.peers), given our codebooks: the same indices and z_q."""
    pytest.importorskip("vector_quantize_pytorch")
    from bench.speed.peers import peers
    from bench.speed.shapes import Shape

    torch.manual_seed(0)
    q = methods.create("pq", 32, 8, groups=2).eval()
    peer = peers()["pq"].make(Shape(B=2, H=4, W=4, D=8, K=32), q).eval()
    with torch.no_grad():
        peer._codebook.embed.copy_(q.codebooks)
        z = torch.randn(2, 8, 4, 4)
        quantized, indices, _ = peer(z)
        out = q(z)
    assert torch.equal(indices, out.indices - torch.tensor([0, 32]))
    torch.testing.assert_close(quantized, out.z_q, rtol=0, atol=1e-6)
