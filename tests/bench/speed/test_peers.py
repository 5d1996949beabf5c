"""The speed benchmark's peers for rvq, bsq and vqgan-lc: built as bench/speed/peers.py builds them,
each computes our quantizer's output when given our weights (so the timing compares the same
computation), and the benchmark's quantizer rows time them beside ours; optvq has no peer."""
from __future__ import annotations

import pytest
import torch

import methods
from bench.speed.peers import peers
from bench.speed.quantizers import quantizer_rows
from bench.speed.shapes import Shape

SHAPE = Shape(B=2, H=4, W=4, D=16, K=64)


@pytest.fixture(scope="module")
def found():
    found = peers()
    assert found, "vector-quantize-pytorch (a test requirement) is missing"
    return found


def _ours_and_peer(found, name):
    torch.manual_seed(0)
    ours = methods.create(name, SHAPE.K, SHAPE.D).train()
    peer = found[name].make(SHAPE, ours).train()
    z = torch.randn(SHAPE.B, ours.latent_channels, SHAPE.H, SHAPE.W)
    return ours, peer, z


def test_new_peers_are_registered_and_optvq_has_none(found):
    assert {"rvq", "bsq", "vqgan-lc"} <= set(found)
    assert "optvq" not in found
    assert found["rvq"].name == "ResidualVQ" and found["bsq"].name == "LFQ(spherical=True)"


def test_bsq_peer_quantizes_as_ours(found):
    ours, peer, z = _ours_and_peer(found, "bsq")  # no weights: sign of the normalised latent / sqrt(d)
    out = ours(z)
    q_peer, idx_peer, _ = peer(z)
    assert torch.equal(out.indices, idx_peer.long())
    torch.testing.assert_close(out.z_q, q_peer, rtol=0, atol=1e-6)


def test_vqgan_lc_peer_holds_our_frozen_features(found):
    ours, peer, z = _ours_and_peer(found, "vqgan-lc")
    assert torch.equal(peer.frozen_codebook, ours.frozen_codebook)
    with torch.no_grad():
        peer.code_transform.load_state_dict(ours.projector.state_dict())  # the learned part, as training would have it
    out = ours(z)
    q_peer, idx_peer, _ = peer(z)
    assert torch.equal(out.indices, idx_peer)
    torch.testing.assert_close(out.z_q, q_peer, rtol=1e-5, atol=1e-6)


def test_rvq_peer_has_our_levels_and_codebook_size(found):
    ours, peer, z = _ours_and_peer(found, "rvq")
    assert len(peer.layers) == ours.levels and peer.layers[0].codebook.shape == (SHAPE.K, SHAPE.D)
    with torch.no_grad():
        for level, layer in enumerate(peer.layers):
            layer._codebook.embed.copy_(ours.embed[level : level + 1])
            layer._codebook.embed_avg.copy_(ours.embed_avg[level : level + 1])
    out = ours(z)
    rows = z.permute(0, 2, 3, 1).reshape(SHAPE.B, -1, SHAPE.D)
    q_peer, _, losses = peer(rows)
    torch.testing.assert_close(out.z_q.permute(0, 2, 3, 1).reshape_as(q_peer), q_peer, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.loss, losses.sum(), rtol=1e-5, atol=1e-7)
    scalar = found["rvq"].forward(peer)(z.clone().requires_grad_(True))  # what is timed: image in, scalar out
    assert scalar.ndim == 0 and torch.isfinite(scalar)


def test_quantizer_rows_time_the_new_peers_beside_ours():
    rows = quantizer_rows(["vqgan", "rvq", "bsq", "vqgan-lc", "optvq"], [SHAPE], torch.device("cpu"), reps=1)
    by_method = {r["method"]: r for r in rows}
    for name, peer in (("rvq", "ResidualVQ"), ("bsq", "LFQ(spherical=True)"), ("vqgan-lc", "SimVQ(frozen_codebook_dim)")):
        row = by_method[name]
        assert row["peer"] == peer and row["peer_ms"] > 0 and row["ratio_to_peer"] > 0, row
    assert by_method["optvq"]["peer"] == "" and by_method["optvq"]["ms"] > 0
