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


# --- codebook tricks (methods/codebook_tricks.py) against VectorQuantize's options of the same name ----

def _peer_ema(dim: int, k: int, **kwargs) -> "vqp.VectorQuantize":
    """The peer configured as our vqgan-ema: decay 0.99, commitment 0.25, straight-through unless asked."""
    kwargs.setdefault("rotation_trick", False)
    kwargs.setdefault("threshold_ema_dead_code", 0)
    return vqp.VectorQuantize(dim=dim, codebook_size=k, decay=0.99, eps=1e-5, commitment_weight=0.25,
                              accept_image_fmap=True, **kwargs).train()


def _peer_learnable(dim: int, k: int, beta: float = 0.25, **kwargs) -> "vqp.VectorQuantize":
    """The peer configured as our vqgan: a codebook learnt by gradient (no EMA). Its one loss term
    beta * ||sg?[q] - z||^2 reaches the encoder with weight beta like our commitment term; it reaches
    the codebook with weight beta where our codebook term has weight 1."""
    kwargs.setdefault("rotation_trick", False)
    kwargs.setdefault("threshold_ema_dead_code", 0)
    return vqp.VectorQuantize(dim=dim, codebook_size=k, learnable_codebook=True, ema_update=False,
                              commitment_weight=beta, accept_image_fmap=True, **kwargs).train()


def _copy_ema_state(ours, peer) -> None:
    with torch.no_grad():
        peer._codebook.embed.copy_(ours.embed.unsqueeze(0))
        peer._codebook.embed_avg.copy_(ours.embed_avg.unsqueeze(0))
        peer._codebook.cluster_size.copy_(ours.cluster_size.unsqueeze(0))


def _step_both(ours, peer, z: torch.Tensor, seed: int):
    """One training forward of each from the same generator state (k-means seeds and dead-code
    replacements draw from torch's global generator)."""
    torch.manual_seed(seed)
    out = ours(z.clone().requires_grad_(True))
    torch.manual_seed(seed)
    q_peer, idx_peer, loss_peer = peer(z.clone().requires_grad_(True))
    return out, q_peer, idx_peer, loss_peer


def test_kmeans_init_vqgan_ema_matches_vector_quantize():
    k, dim = 16, 4
    torch.manual_seed(0)
    ours = methods.create("vqgan-ema", k, dim, kmeans_init=True).train()
    peer = _peer_ema(dim, k, kmeans_init=True, kmeans_iters=10)
    for step in range(4):
        z = _latent(dim, seed=10 + step, b=4, h=8, w=8)
        out, q_peer, idx_peer, loss_peer = _step_both(ours, peer, z, seed=step)
        if step == 0:  # every cluster got rows, so the peer's and our handling of empty ones agree
            assert bool(ours.initted) and bool(peer._codebook.initted)
        assert torch.equal(out.indices, idx_peer), f"step {step}"
        torch.testing.assert_close(out.z_q, q_peer, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out.loss, loss_peer, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(ours.embed, peer.codebook, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours.cluster_size, peer._codebook.cluster_size[0], rtol=1e-5, atol=1e-6)
    # k-means put the codes on the data: many of them are in use (uniform +-1/K codes would give a few).
    assert len(out.indices.unique()) > k // 2


def test_kmeans_init_vqgan_matches_vector_quantize():
    k, dim = 16, 4
    torch.manual_seed(0)
    ours = methods.create("vqgan", k, dim, kmeans_init=True).train()
    peer = _peer_learnable(dim, k, kmeans_init=True, kmeans_iters=10)
    z = _latent(dim, seed=3, b=4, h=8, w=8)
    out, q_peer, idx_peer, loss_peer = _step_both(ours, peer, z, seed=0)
    # The peer's codes are its centroids through its EMA normalisation (a factor 1 + O(eps / n)).
    torch.testing.assert_close(ours.embedding.weight, peer.codebook, rtol=1e-4, atol=1e-6)
    assert torch.equal(out.indices, idx_peer)
    torch.testing.assert_close(out.z_q, q_peer, rtol=1e-4, atol=1e-6)
    # Initialised once: a second step leaves the codes to the gradient.
    before = ours.embedding.weight.detach().clone()
    ours(_latent(dim, seed=4, b=4, h=8, w=8))
    assert torch.equal(before, ours.embedding.weight) and bool(ours.tricks.initted)


def test_dead_code_replacement_vqgan_ema_matches_vector_quantize():
    k, dim = 32, 4
    torch.manual_seed(0)
    ours = methods.create("vqgan-ema", k, dim, threshold_ema_dead_code=1.5).train()
    peer = _peer_ema(dim, k, threshold_ema_dead_code=1.5)
    _copy_ema_state(ours, peer)
    start = ours.embed.clone()
    for step in range(5):
        z = _latent(dim, seed=20 + step, b=1, h=4, w=4)  # 16 rows for 32 dead codes at first: a random half goes
        out, q_peer, idx_peer, loss_peer = _step_both(ours, peer, z, seed=100 + step)
        assert torch.equal(out.indices, idx_peer), f"step {step}"
        torch.testing.assert_close(out.z_q, q_peer, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours.embed, peer.codebook, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours.cluster_size, peer._codebook.cluster_size[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours.embed_avg, peer._codebook.embed_avg[0], rtol=1e-5, atol=1e-6)
    # Codes were replaced by encoder outputs (unit-variance rows, far outside the initial +-1/K).
    assert (ours.embed - start).abs().max() > 0.5


def test_dead_code_replacement_vqgan_matches_vector_quantize():
    k, dim = 32, 4
    torch.manual_seed(0)
    ours = methods.create("vqgan", k, dim, threshold_ema_dead_code=1.5, usage_decay=0.9).train()
    peer = _peer_learnable(dim, k, threshold_ema_dead_code=1.5, decay=0.9)
    with torch.no_grad():
        peer._codebook.embed.copy_(ours.embedding.weight.unsqueeze(0))
    for step in range(5):
        z = _latent(dim, seed=30 + step, b=2, h=4, w=4)
        out, q_peer, idx_peer, _ = _step_both(ours, peer, z, seed=200 + step)
        assert torch.equal(out.indices, idx_peer), f"step {step}"
        torch.testing.assert_close(out.z_q, q_peer, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours.embedding.weight, peer.codebook, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours.tricks.usage, peer._codebook.cluster_size[0], rtol=1e-5, atol=1e-6)
    assert ours.embedding.weight.abs().max() > 0.5  # codes moved onto encoder outputs


def test_rotation_trick_vqgan_ema_matches_vector_quantize():
    k, dim = 32, 8
    torch.manual_seed(0)
    ours = methods.create("vqgan-ema", k, dim, rotation_trick=True).train()
    peer = _peer_ema(dim, k, rotation_trick=True)
    _copy_ema_state(ours, peer)
    z = _latent(dim, seed=5, scale=0.05)
    z1, z2 = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    out = ours(z1)
    q_peer, idx_peer, loss_peer = peer(z2)
    assert torch.equal(out.indices, idx_peer)
    torch.testing.assert_close(out.z_q, q_peer, rtol=1e-5, atol=1e-6)
    weights = _latent(dim, seed=6)
    ((out.z_q * weights).sum() + out.loss).backward()
    ((q_peer * weights).sum() + loss_peer).backward()
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-5, atol=1e-6)
    # The rotated gradient is not the straight-through one.
    assert (z1.grad - weights - 2 * 0.25 * (z - out.z_q.detach()) / z.numel()).abs().max() > 1e-3


def test_rotation_trick_vqgan_matches_vector_quantize():
    k, dim, beta = 32, 8, 0.25
    torch.manual_seed(0)
    ours = methods.create("vqgan", k, dim, rotation_trick=True, beta=beta).train()
    torch.nn.init.normal_(ours.embedding.weight, std=0.5)
    peer = _peer_learnable(dim, k, beta=beta, rotation_trick=True)
    with torch.no_grad():
        peer._codebook.embed.copy_(ours.embedding.weight.unsqueeze(0))
    z = _latent(dim, seed=7)
    z1, z2 = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    out = ours(z1)
    q_peer, idx_peer, loss_peer = peer(z2)
    assert torch.equal(out.indices, idx_peer)
    torch.testing.assert_close(out.z_q, q_peer, rtol=1e-5, atol=1e-6)
    weights = _latent(dim, seed=8)
    ((out.z_q * weights).sum() + out.loss).backward()
    ((q_peer * weights).sum() + loss_peer).backward()
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-5, atol=1e-6)
    # The codebook's gradient comes from the loss only in both; ours weighs the codebook term 1, the peer beta.
    torch.testing.assert_close(ours.embedding.weight.grad * beta, peer._codebook.embed.grad[0], rtol=1e-5, atol=1e-7)


# --- RVQ --------------------------------------------------------------------------------------------

def _peer_rvq(dim: int, k: int, levels: int, **kwargs) -> "vqp.ResidualVQ":
    """ResidualVQ configured as our rvq: EMA decay 0.99, commitment 0.25, straight-through, no dead
    codes unless asked. It takes channel-last rows (its image mode fails on this version)."""
    kwargs.setdefault("rotation_trick", False)
    kwargs.setdefault("threshold_ema_dead_code", 0)
    return vqp.ResidualVQ(dim=dim, num_quantizers=levels, codebook_size=k, decay=0.99, eps=1e-5,
                          commitment_weight=0.25, **kwargs).train()


def _rows(z: torch.Tensor) -> torch.Tensor:
    return z.permute(0, 2, 3, 1).reshape(z.shape[0], -1, z.shape[1])


def _from_rows(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    b, c, h, w = like.shape
    return x.reshape(b, h, w, c).permute(0, 3, 1, 2)


def _rvq_peer_indices(idx_peer: torch.Tensor, ours, like: torch.Tensor) -> torch.Tensor:
    b, _, h, w = like.shape
    offsets = 0 if ours.options.shared_codebook else torch.arange(ours.levels) * ours.level_size
    return idx_peer.reshape(b, h, w, ours.levels) + offsets


# With the tricks: k-means of 256 rows into 16 codes per level, and clusters under 12 rows restart.
@pytest.mark.parametrize("tricks", [{}, {"kmeans_init": True, "threshold_ema_dead_code": 12.0}])
def test_rvq_matches_residual_vq_over_several_training_steps(tricks):
    k, dim, levels = 16, 4, 3
    torch.manual_seed(0)
    ours = methods.create("rvq", k, dim, levels=levels, **tricks).train()
    peer = _peer_rvq(dim, k, levels, kmeans_iters=10, **tricks)
    with torch.no_grad():
        for level, layer in enumerate(peer.layers):
            layer._codebook.embed.copy_(ours.embed[level : level + 1])
            layer._codebook.embed_avg.copy_(ours.embed_avg[level : level + 1])
    start = ours.embed.clone()
    for step in range(4):
        z = _latent(dim, seed=40 + step, b=4, h=8, w=8, scale=0.5 if tricks else 0.05)
        z1, z2 = z.clone().requires_grad_(True), _rows(z).clone().requires_grad_(True)
        torch.manual_seed(step)
        out = ours(z1)
        torch.manual_seed(step)
        q_peer, idx_peer, losses_peer = peer(z2)
        assert torch.equal(out.indices, _rvq_peer_indices(idx_peer, ours, z)), f"step {step}"
        torch.testing.assert_close(out.z_q, _from_rows(q_peer, z), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out.loss, losses_peer.sum(), rtol=1e-5, atol=1e-7)
        for level, layer in enumerate(peer.layers):
            torch.testing.assert_close(ours.embed[level], layer.codebook, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(ours.cluster_size[level], layer._codebook.cluster_size[0], rtol=1e-5, atol=1e-6)
        # The commitment losses reach z alike (through the residuals of every level).
        out.loss.backward()
        losses_peer.sum().backward()
        torch.testing.assert_close(z1.grad, _from_rows(z2.grad, z), rtol=1e-5, atol=1e-7)
    assert (ours.embed - start).abs().max() > 1e-3
    if tricks:  # some codes restarted: their counts were reset to the threshold, in both
        assert bool((ours.cluster_size == 12.0).any())


def test_rvq_output_gradient_is_one_straight_through_estimator():
    # Ours passes the decoder's gradient to z once (RQ-VAE); the peer with quant_grad_frac=1 does too
    # (only the first level's estimator reaches z), while its default passes it once per level.
    k, dim, levels = 16, 4, 3
    torch.manual_seed(0)
    ours = methods.create("rvq", k, dim, levels=levels).train()
    z = _latent(dim, seed=50, scale=0.05)
    weights = _latent(dim, seed=51)
    for frac, factor in ((1.0, 1.0), (0.0, float(levels))):
        peer = _peer_rvq(dim, k, levels, quant_grad_frac=frac)
        with torch.no_grad():
            for level, layer in enumerate(peer.layers):
                layer._codebook.embed.copy_(ours.embed[level : level + 1])
        z1, z2 = z.clone().requires_grad_(True), _rows(z).clone().requires_grad_(True)
        out = ours(z1)
        q_peer, _, _ = peer(z2)
        (out.z_q * weights).sum().backward()
        (_from_rows(q_peer, z) * weights).sum().backward()
        torch.testing.assert_close(z1.grad * factor, _from_rows(z2.grad, z), rtol=1e-6, atol=1e-6)


def test_rvq_shared_codebook_matches_residual_vq_on_one_step():
    # Same codes, indices, outputs, loss and gradient; the EMA step that follows differs by design
    # (the peer decays a shared codebook once per level, ours once per training step).
    k, dim, levels = 16, 4, 3
    torch.manual_seed(0)
    ours = methods.create("rvq", k, dim, levels=levels, shared_codebook=True).train()
    torch.nn.init.normal_(ours.embed, std=0.3)
    peer = _peer_rvq(dim, k, levels, shared_codebook=True)
    with torch.no_grad():
        peer.layers[0]._codebook.embed.copy_(ours.embed)
    z = _latent(dim, seed=52, b=2, h=4, w=4, scale=0.5)
    z1, z2 = z.clone().requires_grad_(True), _rows(z).clone().requires_grad_(True)
    out = ours(z1)
    q_peer, idx_peer, losses_peer = peer(z2)
    assert ours.codebook_size == k and not ours.code_groups
    assert torch.equal(out.indices, _rvq_peer_indices(idx_peer, ours, z))
    torch.testing.assert_close(out.z_q, _from_rows(q_peer, z), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out.loss, losses_peer.sum(), rtol=1e-5, atol=1e-7)
    out.loss.backward()
    losses_peer.sum().backward()
    torch.testing.assert_close(z1.grad, _from_rows(z2.grad, z), rtol=1e-5, atol=1e-7)
    # Codes from indices: the peer's sum of codes, given the same (updated) codebook.
    ours.eval(), peer.eval()
    with torch.no_grad():
        peer.layers[0]._codebook.embed.copy_(ours.embed)
    torch.testing.assert_close(ours.decode_indices(out.indices), _from_rows(peer.get_output_from_indices(idx_peer), z),
                               rtol=1e-6, atol=1e-6)


# --- BSQ --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [16, 256])
def test_bsq_matches_vector_quantize_spherical_lfq(k):
    # The peer's LFQ(spherical=True) is BSQ with the exact entropies over all K codes: ours with
    # entropy_group_size = log2 K. Its commitment is a mean over channels, ours a sum (the released
    # code's): weight d times ours. tau = 10 keeps the per-sample entropies away from 0 and log K.
    tau = 10.0
    torch.manual_seed(0)
    ours = methods.create("bsq", k, 32, entropy_group_size=int(k).bit_length() - 1, inv_temperature=tau,
                          commitment_weight=0.25).train()
    d = ours.latent_channels
    peer = vqp.LFQ(dim=d, codebook_size=k, spherical=True, entropy_loss_weight=0.1, diversity_gamma=1.0,
                   commitment_loss_weight=0.25 * d).train()
    z = _latent(d, seed=9, b=4, h=8, w=8)
    z1, z2 = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    out = ours(z1)
    (q_peer, idx_peer, aux_peer), breakdown = peer(z2, inv_temperature=tau, return_loss_breakdown=True)
    assert torch.equal(out.indices, idx_peer.long())
    torch.testing.assert_close(out.z_q, q_peer, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.logs["per_sample_entropy"], breakdown.per_sample_entropy, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.logs["codebook_entropy"], breakdown.batch_entropy, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.loss, aux_peer, rtol=0, atol=1e-5)
    assert 0.05 < float(out.logs["per_sample_entropy"]) < 0.9 * torch.log(torch.tensor(float(k)))
    weights = _latent(d, seed=10, b=4, h=8, w=8)
    ((out.z_q * weights).sum() + out.loss).backward()
    ((q_peer * weights).sum() + aux_peer).backward()
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ours.decode_indices(out.indices), peer.indices_to_codes(idx_peer), rtol=0, atol=1e-6)


# --- VQGAN-LC ---------------------------------------------------------------------------------------

def test_vqgan_lc_matches_vector_quantize_simvq_with_its_frozen_features():
    # The peer's SimVQ with a frozen codebook of another dimension and a biased linear transform is
    # VQGAN-LC's quantizer: we give it our frozen features and projector. Its loss is
    # commitment_weight * (codebook term + input_to_quantize_commit_loss_weight * commitment term);
    # ours is 0.33 * codebook term + 1 * commitment term.
    k, dim = 64, 8
    torch.manual_seed(0)
    ours = methods.create("vqgan-lc", k, dim).train()
    features = ours.frozen_codebook.shape[1]
    peer = vqp.SimVQ(dim=dim, codebook_size=k, frozen_codebook_dim=features,
                     codebook_transform=torch.nn.Linear(features, dim), rotation_trick=False, channel_first=True,
                     input_to_quantize_commit_loss_weight=1 / 0.33, commitment_weight=0.33).train()
    with torch.no_grad():
        peer.frozen_codebook.copy_(ours.frozen_codebook)
        peer.code_transform.load_state_dict(ours.projector.state_dict())
    z = _latent(dim, seed=11, b=4, h=8, w=8, scale=0.5)
    z1, z2 = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    out = ours(z1)
    q_peer, idx_peer, loss_peer = peer(z2)
    assert torch.equal(out.indices, idx_peer)
    torch.testing.assert_close(out.z_q, q_peer, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out.loss, loss_peer, rtol=1e-5, atol=1e-7)
    (out.z_q.square().sum() + out.loss).backward()
    (q_peer.square().sum() + loss_peer).backward()
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.projector.weight.grad, peer.code_transform.weight.grad, rtol=1e-5, atol=1e-6)
    assert len(out.indices.unique()) > 5
