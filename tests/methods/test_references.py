"""Our quantizers against vector-quantize-pytorch 1.32.0 (a test-only dependency), where it implements
the same method: same input, same codebook / parameters -> same indices, same quantised output, same
losses. Differences by design are written next to the option that switches them off in the peer."""
from importlib.metadata import version

import pytest
import torch
import vector_quantize_pytorch as vqp  # pinned in requirements/test.txt; a missing peer is a failure, not a skip

import methods


def test_the_peer_is_the_pinned_version():
    assert version("vector-quantize-pytorch") == "1.32.0"


def _latent(channels: int, seed: int = 0, b: int = 2, h: int = 4, w: int = 4, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, channels, h, w, generator=g) * scale


# --- EMA VQ -----------------------------------------------------------------------------------------

def test_vqgan_ema_matches_vector_quantize_over_several_training_steps():
    k, dim = 32, 8
    torch.manual_seed(0)
    ours = methods.create("vqgan-ema", k, dim).train()
    # Differences by design, switched off in the peer so that the same algorithm runs:
    # - rotation_trick: the peer's default gradient estimator; ours is the plain straight-through one.
    # - decay: the peer defaults to 0.8; VQ-VAE / taming (and we) use 0.99.
    # - commitment_weight: the peer defaults to 1.0; VQ-VAE's beta is 0.25.
    # - the peer's codebook starts from kaiming-uniform codes: we copy ours in.
    # Both start counts at one and sums at the codes (taming starts counts at zero).
    peer = vqp.VectorQuantize(dim=dim, codebook_size=k, decay=0.99, eps=1e-5, commitment_weight=0.25,
                              rotation_trick=False, accept_image_fmap=True, threshold_ema_dead_code=0).train()
    with torch.no_grad():
        peer._codebook.embed.copy_(ours.embed.unsqueeze(0))
        peer._codebook.embed_avg.copy_(ours.embed_avg.unsqueeze(0))
        peer._codebook.cluster_size.copy_(ours.cluster_size.unsqueeze(0))
    start = ours.embed.clone()
    for step in range(5):
        z = _latent(dim, seed=step, scale=0.05)  # codes are uniform in +-1/K: keep z in their range
        out = ours(z.clone().requires_grad_(True))
        q_peer, idx_peer, loss_peer = peer(z.clone().requires_grad_(True))
        assert torch.equal(out.indices, idx_peer), f"step {step}"
        torch.testing.assert_close(out.z_q, q_peer, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(out.loss, loss_peer, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(ours.embed, peer.codebook, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(ours.cluster_size, peer._codebook.cluster_size[0], rtol=1e-6, atol=1e-7)
    # The codebook did move: the comparison above is not between two frozen codebooks.
    assert (ours.embed - start).abs().max() > 1e-3


# --- LFQ --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [16, 256])
def test_lfq_matches_vector_quantize_lfq(k):
    torch.manual_seed(0)
    ours = methods.create("lfq", k, 32).train()
    d = ours.latent_channels
    # The peer's defaults differ: commitment weight 0 (ours 0.25, MAGVIT-v2's) -> set to 0.25.
    # inv_temperature 100 = 1 / tau with our tau = 0.01; entropy weight 0.1 and gamma 1 match.
    peer = vqp.LFQ(dim=d, codebook_size=k, entropy_loss_weight=0.1, commitment_loss_weight=0.25,
                   diversity_gamma=1.0).train()
    z = _latent(d, seed=1, b=4, h=8, w=8, scale=0.1)  # small values: soft p(c|z), non-trivial entropies
    out = ours(z.clone().requires_grad_(True))
    (q_peer, idx_peer, aux_peer), breakdown = peer(z.clone().requires_grad_(True), inv_temperature=100.0,
                                                   return_loss_breakdown=True)
    assert torch.equal(out.indices, idx_peer.long())
    torch.testing.assert_close(out.z_q, q_peer, rtol=0, atol=0)
    torch.testing.assert_close(out.loss, aux_peer, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.logs["per_sample_entropy"], breakdown.per_sample_entropy, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.logs["codebook_entropy"], breakdown.batch_entropy, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.logs["commitment"], breakdown.commitment, rtol=0, atol=1e-6)
    # The entropies are not degenerate, so the comparison has teeth.
    assert 0.05 < float(out.logs["per_sample_entropy"]) and float(out.logs["codebook_entropy"]) > 1.0
    # Same codes from indices.
    torch.testing.assert_close(ours.decode_indices(out.indices), peer.indices_to_codes(idx_peer), rtol=0, atol=0)


def test_lfq_entropy_gradients_match_the_peer():
    torch.manual_seed(0)
    ours = methods.create("lfq", 64, 32).train()
    peer = vqp.LFQ(dim=6, codebook_size=64, entropy_loss_weight=0.1, commitment_loss_weight=0.25).train()
    z = _latent(6, seed=2, scale=0.1)
    z1, z2 = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    ours(z1).loss.backward()
    peer(z2, inv_temperature=100.0).entropy_aux_loss.backward()
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-4, atol=1e-6)


# --- FSQ --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [64, 240, 1000])
def test_fsq_matches_vector_quantize_fsq(k):
    ours = methods.create("fsq", k, 32).train()
    # Same levels (ours derived from K; for 240 and 1000 the paper's Table 1), no projections:
    # the peer's `dim` equals the number of levels.
    peer = vqp.FSQ(levels=list(ours.levels)).train()
    z = _latent(len(ours.levels), seed=3, b=4, h=8, w=8, scale=2.0)
    out = ours(z.clone().requires_grad_(True))
    q_peer, idx_peer = peer(z.clone())
    assert torch.equal(out.indices, idx_peer.long())
    torch.testing.assert_close(out.z_q, q_peer, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.decode_indices(out.indices), peer.indices_to_codes(idx_peer), rtol=0, atol=1e-6)
    # Every one of the K grid points is reachable and decodes like the peer's implicit codebook.
    all_idx = torch.arange(k).view(1, k, 1)
    torch.testing.assert_close(ours.decode_indices(all_idx)[0, :, :, 0].t(), peer.implicit_codebook, rtol=0, atol=1e-6)
    # FSQ has no auxiliary loss (the peer returns none at all).
    assert float(out.loss) == 0.0


# --- SimVQ ------------------------------------------------------------------------------------------

def test_simvq_matches_vector_quantize_simvq():
    k, dim = 64, 8
    torch.manual_seed(0)
    ours = methods.create("simvq", k, dim).train()
    torch.nn.init.normal_(ours.proj.weight, std=0.5)  # a non-trivial W
    # The peer's default is the rotation trick; the SimVQ paper (and we) use straight-through.
    peer = vqp.SimVQ(dim=dim, codebook_size=k, rotation_trick=False, channel_first=True,
                     input_to_quantize_commit_loss_weight=0.25, commitment_weight=1.0).train()
    with torch.no_grad():
        peer.frozen_codebook.copy_(ours.frozen_codebook)
        peer.code_transform.weight.copy_(ours.proj.weight)
    z = _latent(dim, seed=4, b=4, h=8, w=8, scale=0.5)
    z1, z2 = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    out = ours(z1)
    q_peer, idx_peer, loss_peer = peer(z2)
    assert torch.equal(out.indices, idx_peer)
    torch.testing.assert_close(out.z_q, q_peer, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out.loss, loss_peer, rtol=1e-5, atol=1e-7)
    # Same gradients into the encoder and into W.
    (out.z_q.square().sum() + out.loss).backward()
    (q_peer.square().sum() + loss_peer).backward()
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.proj.weight.grad, peer.code_transform.weight.grad, rtol=1e-5, atol=1e-6)
    assert len(out.indices.unique()) > 5
