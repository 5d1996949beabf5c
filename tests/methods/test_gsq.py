"""gsq: every group is l2-normalised and takes the code of the ONE shared codebook whose direction is
nearest; the same computation as vector-quantize-pytorch's shared cosine-similarity heads."""
import math

import pytest
import torch
import torch.nn.functional as F

import methods
from bench.core.errors import UserError


def _brute_force(q, z):
    """(N, G) indices by the largest cosine between each normalised group and each code, and the rows."""
    parts = F.normalize(z.permute(0, 2, 3, 1).reshape(-1, q.groups, q.sub_dim), dim=-1)
    cosine = parts @ F.normalize(q.codebook.detach(), dim=-1).t()  # (N, G, K)
    return cosine.argmax(-1), parts


def test_groups_share_one_codebook_and_take_the_nearest_direction_even_off_the_sphere():
    torch.manual_seed(0)
    q = methods.create("gsq", 16, 12, groups=3).eval()
    with torch.no_grad():  # codes off the sphere (as after training): search by direction, output the row itself
        q.codebook.mul_(torch.rand(16, 1) * 2 + 0.5)
    z = torch.randn(2, 12, 3, 3)
    with torch.no_grad():
        out = q(z)
    brute, _ = _brute_force(q, z)
    assert out.indices.shape == (2, 3, 3, 3) and torch.equal(out.indices.reshape(-1, 3), brute)
    assert q.codebook_size == 16 and q.code_groups == {} and q.index_level_sizes() == (16, 16, 16)
    expected = q.codebook.detach()[brute].reshape(2, 3, 3, 12).permute(0, 3, 1, 2)
    torch.testing.assert_close(out.z_q, expected, rtol=0, atol=0)
    torch.testing.assert_close(q.decode_indices(out.indices), out.z_q, rtol=0, atol=0)
    # one codebook: the same direction in two groups gets the same index
    same = torch.randn(1, 4, 1, 1).repeat(1, 3, 1, 1) * torch.tensor([1.0, 3.0, 0.1]).repeat_interleave(4).view(1, 12, 1, 1)
    with torch.no_grad():
        idx = q(same).indices.flatten()
    assert idx[0] == idx[1] == idx[2]


def test_spherical_initialisation_and_the_bit_budget():
    torch.manual_seed(0)
    q = methods.create("gsq", 64, 8, groups=4)
    torch.testing.assert_close(q.codebook.detach().norm(dim=1), torch.ones(64))
    assert q.bits_per_image(4, 5) == pytest.approx(20 * 4 * 6)
    assert methods.entry("gsq").cls.budget_bits(64, 8, q.options, 16) == pytest.approx(256 * 4 * math.log2(64))
    assert methods.entry("gsq").cls.parameter_count(64, 8, q.options) == 64 * 2


def test_loss_is_codebook_plus_beta_commitment_against_the_normalised_latent():
    torch.manual_seed(0)
    q = methods.create("gsq", 8, 4, groups=2, beta=0.5).train()
    z = torch.randn(2, 4, 2, 2, requires_grad=True)
    out = q(z)
    brute, parts = _brute_force(q, z.detach())
    mse = (q.codebook.detach()[brute] - parts).pow(2).mean()
    torch.testing.assert_close(out.logs["codebook"], mse)
    torch.testing.assert_close(out.logs["commitment"], mse)
    torch.testing.assert_close(out.loss, 1.5 * mse)
    (out.z_q.sum() + out.loss).backward()
    assert q.codebook.grad is not None and q.codebook.grad.abs().sum() > 0
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_groups_that_do_not_divide_the_latent_are_refused():
    with pytest.raises(UserError, match="gsq: groups must divide the latent dimension 8"):
        methods.create("gsq", 16, 8, groups=3)


def test_same_as_vector_quantize_pytorch_shared_cosine_heads():
    """The peer (bench.speed.peers) holding our codebook: the same indices and z_q to 1e-6, its loss
    (beta x commitment, it has no codebook term) equal to ours minus our codebook term, and the same
    input gradient to 1e-6 (our codebook term sends none to the input)."""
    pytest.importorskip("vector_quantize_pytorch")
    from bench.speed.peers import peers
    from bench.speed.shapes import Shape

    torch.manual_seed(0)
    q = methods.create("gsq", 32, 8, groups=2).train()
    peer = peers()["gsq"].make(Shape(B=2, H=4, W=4, D=8, K=32), q).train()
    with torch.no_grad():
        q.codebook.copy_(peer._codebook.embed[0])  # unit-norm codes, as both initialise them
    z = torch.randn(2, 8, 4, 4)
    weights = torch.randn(2, 8, 4, 4)
    z_peer, z_ours = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    quantized, indices, loss = peer(z_peer)
    out = q(z_ours)
    assert torch.equal(indices, out.indices)
    torch.testing.assert_close(quantized, out.z_q, rtol=0, atol=1e-6)
    torch.testing.assert_close(loss.sum(), out.loss - out.logs["codebook"], rtol=1e-5, atol=1e-7)
    ((quantized * weights).sum() + loss.sum()).backward()
    ((out.z_q * weights).sum() + out.loss).backward()
    assert z_peer.grad.abs().sum() > 0
    torch.testing.assert_close(z_ours.grad, z_peer.grad, rtol=0, atol=1e-6)
