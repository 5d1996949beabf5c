"""vqbridge: the official bridge's architecture, parity with vector-quantize-pytorch's `vq_bridge`,
exact decoding from the bridged codebook, the annealing schedule, and its option checks."""
import pytest
import torch
import torch.nn.functional as F

import methods
from bench.core.errors import UserError
from methods.vqbridge import VQBridgeOptions, annealing_factor, bridge_parameter_count

# Parity tolerance with vector-quantize-pytorch 1.32.0 (float32 on the CPU): indices equal; z_q, loss
# and every gradient to 1e-5 relative / 1e-6 absolute (the peer computes distances with cdist and the
# lookup as a one-hot product, ours with nearest_codes and a gather: same values up to rounding).
RTOL, ATOL = 1e-5, 1e-6


def _spread(q: methods.Quantizer) -> None:
    """The official zero-initialised recover layer makes every code equal at step 0; give it weights so
    that the codes differ, as after training starts."""
    torch.manual_seed(3)
    with torch.no_grad():
        q.bridge.recover.weight.normal_(0, 0.2)
        q.bridge.recover.bias.normal_(0, 0.2)


def _pair(beta: float, commitment_weight: float, joint: bool, k: int = 64, dim: int = 8):
    """Ours, and the speed benchmark's peer (bench.speed.peers: VectorQuantize over a copy of our bridge
    and our codes, straight-through, no dead-code replacement) at the given commitment weight."""
    pytest.importorskip("vector_quantize_pytorch")
    from bench.speed.peers import peers
    from bench.speed.shapes import Shape

    torch.manual_seed(0)
    ours = methods.create("vqbridge", k, dim, beta=beta, joint_loss=joint).train()
    _spread(ours)
    peer = peers()["vqbridge"].make(Shape(B=2, H=4, W=4, D=dim, K=k), ours).train()
    peer.commitment_weight = commitment_weight
    assert peer._codebook.vq_bridge is not ours.bridge and torch.equal(peer._codebook.embed[0], ours.codes)
    return ours, peer


def _grads(module_params, z):
    return [p.grad.clone() for p in module_params] + [z.grad.clone()]


def test_same_outputs_loss_and_gradients_as_vector_quantize_pytorch():
    ours, peer = _pair(beta=0.25, commitment_weight=0.25, joint=True)
    torch.manual_seed(1)
    z0 = torch.randn(2, 8, 4, 4)
    z_ours, z_peer = z0.clone().requires_grad_(), z0.clone().requires_grad_()
    out = ours(z_ours)
    quantized, indices, loss = peer(z_peer)
    assert torch.equal(out.indices, indices)
    assert len(out.indices.unique()) > 4  # the comparison is over many codes, not one tie
    torch.testing.assert_close(out.z_q, quantized, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(out.loss, loss, rtol=RTOL, atol=ATOL)
    weights = torch.randn_like(z0)
    ((out.z_q * weights).sum() + out.loss).backward()
    ((quantized * weights).sum() + loss).backward()
    ours_grads = _grads([ours.codes, *ours.bridge.parameters()], z_ours)
    peer_grads = _grads([peer._codebook.embed, *peer._codebook.vq_bridge.parameters()], z_peer)
    assert ours_grads[0].abs().sum() > 0 and ours_grads[1].abs().sum() > 0  # codebook and bridge both learn
    for a, b in zip(ours_grads, peer_grads):
        torch.testing.assert_close(a, b.reshape(a.shape), rtol=RTOL, atol=ATOL)


def test_paper_loss_moves_the_codes_by_the_codebook_term_and_the_encoder_by_beta():
    """The paper's ||sg[z]-q||^2 + beta ||z-sg[q]||^2 against the peer's single term at weight 1: the same
    gradient to the codebook and the bridge, beta times it to the encoder."""
    ours, peer = _pair(beta=0.25, commitment_weight=1.0, joint=False)
    torch.manual_seed(1)
    z0 = torch.randn(2, 8, 4, 4)
    z_ours, z_peer = z0.clone().requires_grad_(), z0.clone().requires_grad_()
    out = ours(z_ours)
    _, _, loss = peer(z_peer)
    torch.testing.assert_close(out.logs["codebook"], loss.detach(), rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(out.loss, 1.25 * loss, rtol=RTOL, atol=ATOL)
    out.loss.backward()
    loss.backward()
    ours_grads = _grads([ours.codes, *ours.bridge.parameters()], z_ours)
    peer_grads = _grads([peer._codebook.embed, *peer._codebook.vq_bridge.parameters()], z_peer)
    for a, b in zip(ours_grads[:-1], peer_grads[:-1]):
        torch.testing.assert_close(a, b.reshape(a.shape), rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(ours_grads[-1], 0.25 * peer_grads[-1], rtol=RTOL, atol=ATOL)


def test_search_is_against_the_bridged_codebook_and_decoding_is_exact_after_training():
    torch.manual_seed(0)
    q = methods.create("vqbridge", 64, 8).train()
    opt = torch.optim.Adam(q.parameters(), lr=1e-2)
    for _ in range(3):  # from the all-zero start to distinct codes
        z = torch.randn(4, 8, 4, 4, requires_grad=True)
        opt.zero_grad()
        q(z).loss.backward()
        opt.step()
    q.eval()
    z = torch.randn(2, 8, 4, 4)
    with torch.no_grad():
        out = q(z)
        bridged = q.bridge(q.codes)
    brute = torch.cdist(z.permute(0, 2, 3, 1).reshape(-1, 8), bridged).argmin(1)
    assert torch.equal(out.indices.reshape(-1), brute)
    assert not torch.equal(bridged, q.codes)
    assert torch.equal(q.decode_indices(out.indices), out.z_q)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # the trainer's autocast
        out_bf16 = q(z)
    assert torch.equal(out_bf16.indices, out.indices) and torch.equal(q.decode_indices(out.indices), out_bf16.z_q)


def test_the_bridge_is_the_official_patch_layout_up_to_a_relabelling_of_codes():
    """The official code views C as a (dim, sqrt K, sqrt K) image, embeds p x p patches with a strided
    convolution and unpatchifies the output; ours groups p*p consecutive codes. With the convolution's
    weights rearranged into our linear layers and the codes relabelled, the outputs agree."""
    torch.manual_seed(0)
    k, dim, p = 64, 8, 4
    q = methods.create("vqbridge", k, dim, codes_per_token=p * p)
    _spread(q)
    b = q.bridge
    side, tiles = 8, 2  # sqrt K, patches per side
    # code (row, col) of the official grid is official index row * side + col; ours: token t, slot (a, c)
    official = torch.tensor([(ti * p + a) * side + tj * p + c
                             for ti in range(tiles) for tj in range(tiles) for a in range(p) for c in range(p)])
    codes = torch.randn(k, dim)
    with torch.no_grad():
        grid = codes.t().reshape(1, dim, side, side)  # embedding.weight.permute(1, 0).reshape(1, e_dim, h, w)
        conv_w = b.compress.weight.view(-1, p, p, dim).permute(0, 3, 1, 2)  # (width, dim, p, p)
        x = F.conv2d(grid, conv_w, b.compress.bias, stride=p).flatten(2).transpose(1, 2)  # timm PatchEmbed
        for block in b.blocks:
            x = block(x)
        x = b.recover(F.layer_norm(x, (x.shape[-1],), eps=1e-6))
        x = x.reshape(1, tiles, tiles, p, p, dim).permute(0, 5, 1, 3, 2, 4).reshape(1, dim, side, side)  # unpatchify
        reference = x.reshape(dim, k).t()  # back to (K, dim) in the official order
        ours = b(codes[official])
    torch.testing.assert_close(ours, reference[official], rtol=1e-5, atol=1e-6)


def test_official_initialisation_starts_from_all_zero_codes():
    torch.manual_seed(0)
    q = methods.create("vqbridge", 32, 4)
    assert torch.equal(q.codebook(), torch.zeros(32, 4))
    assert q.codes.abs().max() <= 1 / 32
    assert all(lin.bias.abs().sum() == 0 for lin in (q.bridge.compress, q.bridge.blocks[0].qkv, q.bridge.blocks[1].fc2))


def test_annealing_follows_the_official_linear_schedule():
    o = VQBridgeOptions()  # warm-up 10% from 0.005, hold 30% of the rest, linear to 0.01 at the last step
    total = 101
    assert annealing_factor(0, total, o) == pytest.approx(0.005)
    assert annealing_factor(5, total, o) == pytest.approx(0.005 + 0.995 * 0.5)
    assert annealing_factor(10, total, o) == 1.0  # warm-up over: int(0.1 * 101) = 10 steps
    assert annealing_factor(37, total, o) == 1.0  # passed = 27/90 = 0.3: still held
    assert annealing_factor(55, total, o) == pytest.approx(0.01 + 0.99 * 0.5 / 0.7)  # passed 0.5
    assert annealing_factor(100, total, o) == pytest.approx(0.01)  # the last step


@pytest.mark.parametrize("anneal, holds_codes", [("quantizer", True), ("bridge", False)])
def test_learning_rate_groups_hold_what_anneal_names(anneal, holds_codes):
    q = methods.create("vqbridge", 32, 4, anneal=anneal)
    (group,) = q.learning_rate_groups()
    ids = {id(p) for p in group.parameters}
    assert all(id(p) in ids for p in q.bridge.parameters())
    assert (id(q.codes) in ids) == holds_codes
    assert group.factor(0, 100) == pytest.approx(0.005)
    assert methods.create("vqbridge", 32, 4, anneal="off").learning_rate_groups() == ()


def test_parameter_count_matches_the_built_quantizer():
    for options in ({}, {"codes_per_token": 4, "width": 24, "heads": 3, "depth": 1, "mlp_ratio": 1.5}):
        q = methods.create("vqbridge", 64, 8, **options)
        assert q.parameter_count(64, 8, q.options) == sum(p.numel() for p in q.parameters())
        assert bridge_parameter_count(8, q.options) == sum(p.numel() for p in q.bridge.parameters())


@pytest.mark.parametrize("k, options, message", [
    (100, {}, r"K must be a multiple of codes_per_token \(16\).*use K=96 or 112"),
    (64, {"width": 30, "heads": 4}, "heads \\(4\\) must divide width \\(30\\)"),
    (64, {"anneal": "all"}, "anneal must be one of quantizer, bridge, off"),
])
def test_impossible_options_are_refused_with_one_line(k, options, message):
    with pytest.raises(UserError, match=message):
        methods.create("vqbridge", k, 8, **options)
