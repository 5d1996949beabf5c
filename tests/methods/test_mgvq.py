"""mgvq: pq on the unit sphere (own sub-codebook per group, normalised codes out), the same computation
as vector-quantize-pytorch's per-head cosine codebooks with masking off, and nested group masking."""
import pytest
import torch
import torch.nn.functional as F

import methods
from bench.core.errors import UserError


def test_each_group_takes_the_nearest_normalised_code_of_its_own_sub_codebook():
    torch.manual_seed(0)
    q = methods.create("mgvq", 16, 12, groups=3).eval()
    with torch.no_grad():
        q.codebooks.mul_(torch.rand(3, 16, 1) * 2 + 0.5)  # off the sphere: the search and output normalise them
    z = torch.randn(2, 12, 3, 3)
    with torch.no_grad():
        out = q(z)
    parts = F.normalize(z.permute(0, 2, 3, 1).reshape(-1, 3, 4), dim=-1)
    units = F.normalize(q.codebooks.detach(), dim=-1)
    for g in range(3):
        brute = (parts[:, g] @ units[g].t()).argmax(1)
        assert torch.equal(out.indices.reshape(-1, 3)[:, g], brute + 16 * g)  # pq's global index g * K + j
        expected = units[g][brute].reshape(2, 3, 3, 4).permute(0, 3, 1, 2)
        torch.testing.assert_close(out.z_q[:, 4 * g : 4 * g + 4], expected, rtol=0, atol=0)
    assert q.codebook_size == 48 and q.index_level_sizes() == (16, 16, 16)
    torch.testing.assert_close(q.decode_indices(out.indices), out.z_q, rtol=0, atol=0)


def _masks(q, draws):
    return torch.stack([q.kept_groups(torch.device("cpu")) for _ in range(draws)])


def test_nested_masking_drops_a_suffix_of_groups_at_the_official_rates():
    torch.manual_seed(0)
    q = methods.create("mgvq", 16, 16, groups=8).train()  # default probabilities 0.2, 0.3, 0.4 for groups 1-3
    keep = _masks(q, 4000)
    assert torch.all(keep[:, 0] == 1) and torch.all(keep[:, 4:] == 1)  # group 0 and groups past the table stay
    assert torch.all(keep[:, 1:4][:, 1:] <= keep[:, 1:4][:, :-1])  # nested: once a group goes, the later ones go
    rates = 1 - keep[:, 1:4].mean(0)
    torch.testing.assert_close(rates, torch.tensor([0.2, 0.3, 0.4]), rtol=0, atol=0.03)  # ~4 sigma at n=4000
    assert torch.all(_masks(q.eval(), 50) == 1)  # eval mode never masks


def test_a_dropped_group_is_zero_has_no_gradient_and_no_loss():
    torch.manual_seed(0)
    q = methods.create("mgvq", 8, 8, groups=4, mask_probs=(0.0, 1 - 1e-9, 1 - 1e-9)).train()  # groups 2, 3 dropped
    z = torch.randn(2, 8, 2, 2, requires_grad=True)
    out = q(z)
    assert torch.all(out.z_q[:, 4:] == 0) and torch.all(out.z_q[:, :4].abs() > 0)
    out.z_q.sum().backward()
    assert torch.all(z.grad[:, 4:] == 0) and z.grad[:, :4].abs().sum() > 0
    q.eval()
    with torch.no_grad():
        full = q(z)
    parts_q = full.z_q.view(2, 4, 2, 2, 2)  # (B, G, sub, H, W)
    parts_z = F.normalize(z.detach().view(2, 4, 2, 2, 2), dim=2)
    kept = (parts_q[:, :2] - parts_z[:, :2]).pow(2).mean()
    torch.testing.assert_close(out.logs["commitment"], kept)
    torch.testing.assert_close(out.loss, 1.25 * kept)


def test_increasing_probabilities_and_dividing_groups_are_required():
    with pytest.raises(UserError, match="mgvq: mask_probs must be non-decreasing"):
        methods.create("mgvq", 16, 8, mask_probs=(0.4, 0.2))
    with pytest.raises(UserError, match="mgvq: groups must divide the latent dimension 8"):
        methods.create("mgvq", 16, 8, groups=3)


def test_same_as_vector_quantize_pytorch_cosine_codebook_per_head_with_masking_off():
    """The peer (bench.speed.peers) holding our sub-codebooks: the same indices (less pq's offsets) and
    z_q to 1e-6, its loss (beta x commitment) equal to ours minus our codebook term, and the same input
    gradient to 1e-6. Masking off (`mask_probs=0`): the peer has none."""
    pytest.importorskip("vector_quantize_pytorch")
    from bench.speed.peers import peers
    from bench.speed.shapes import Shape

    torch.manual_seed(0)
    q = methods.create("mgvq", 32, 8, groups=2, mask_probs=(0.0,)).train()
    peer = peers()["mgvq"].make(Shape(B=2, H=4, W=4, D=8, K=32), q).train()
    with torch.no_grad():
        peer._codebook.embed.copy_(q.codebooks)  # ours start on the sphere, as the peer's
    z = torch.randn(2, 8, 4, 4)
    weights = torch.randn(2, 8, 4, 4)
    z_peer, z_ours = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    quantized, indices, loss = peer(z_peer)
    out = q(z_ours)
    assert torch.equal(indices, out.indices - torch.tensor([0, 32]))
    torch.testing.assert_close(quantized, out.z_q, rtol=0, atol=1e-6)
    torch.testing.assert_close(loss.sum(), out.loss - out.logs["codebook"], rtol=1e-5, atol=1e-7)
    ((quantized * weights).sum() + loss.sum()).backward()
    ((out.z_q * weights).sum() + out.loss).backward()
    assert z_peer.grad.abs().sum() > 0
    torch.testing.assert_close(z_ours.grad, z_peer.grad, rtol=0, atol=1e-6)


def test_the_speed_benchmark_times_gsq_and_mgvq_beside_their_peers():
    pytest.importorskip("vector_quantize_pytorch")
    from bench.speed.quantizers import quantizer_rows
    from bench.speed.shapes import Shape

    rows = quantizer_rows(["gsq", "mgvq"], [Shape(B=2, H=4, W=4, D=16, K=64)], torch.device("cpu"), reps=1)
    by_method = {r["method"]: r for r in rows}
    assert by_method["gsq"]["peer"] == "VectorQuantize(heads=G, use_cosine_sim=True)"
    assert by_method["mgvq"]["peer"] == "VectorQuantize(heads=G, separate_codebook_per_head=True, use_cosine_sim=True)"
    assert all(by_method[m]["ms"] > 0 and by_method[m]["peer_ms"] > 0 for m in ("gsq", "mgvq"))
