"""The speed benchmark's peer and comparison table: the only place in bench.speed that names methods.

- PEERS: vector-quantize-pytorch's implementation of the same method, timed beside ours (every
  method it implements: vqgan, vqgan-ema, simvq, lfq, fsq, rvq, bsq, vqgan-lc, pq, gsq, mgvq, fsp,
  vqbridge, diveq; not optvq, cvq, ibq, gumbel, vqct, leech, ifsq or sf-diveq, which it does not have).
- REFERENCE: the method every row's `ratio_to_<reference>` is taken against (plain VQ, the cost a
  user swapping quantizers starts from).
- PAIRED_WITH_REFERENCE: methods whose target is stated against the reference (VQCT: at most 1.5x
  vqgan), so they are timed alternately with it instead of against its earlier time; their
  registered variants (ablations, which share the class) are paired too.
- TRAIN_STEP_METHODS: the methods of the full training-step rows (the default benchmark's pair).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

import methods
from bench.speed.shapes import Shape

REFERENCE = "vqgan"
PAIRED_WITH_REFERENCE = ("vqct",)
TRAIN_STEP_METHODS = (REFERENCE, "vqct")
# Options the quantizer rows time a method with instead of its defaults, where the defaults would time
# something else: sf-diveq passes latents through unquantised for its first skip_iters - 1 training
# steps (its warm-up), so it is timed with the warm-up off, quantising from the first step.
TIMED_OPTIONS: dict[str, dict[str, object]] = {"sf-diveq": {"skip_iters": 0}}

# The peers build the full N x K distance (or logit) matrix; above this many bytes they are not run.
_PEER_MAX_MATRIX_BYTES = 2**31


@dataclass(frozen=True)
class Peer:
    name: str  # as printed in the `peer` column
    make: Callable[[Shape, methods.Quantizer], torch.nn.Module]  # at a shape, beside our quantizer there
    forward: Callable[[torch.nn.Module], Callable[[torch.Tensor], torch.Tensor]]  # -> a scalar to backprop


def peer_fits(shape: Shape) -> bool:
    return shape.n * shape.K * 4 <= _PEER_MAX_MATRIX_BYTES


def paired_with_reference(name: str) -> bool:
    cls = methods.entry(name).cls
    return any(cls is methods.entry(m).cls for m in PAIRED_WITH_REFERENCE if m in methods.available())


def peers() -> dict[str, Peer]:
    """method -> its peer; empty when vector-quantize-pytorch (a test dependency) is not installed."""
    try:
        import vector_quantize_pytorch as vqp
    except ImportError:
        return {}

    def with_loss(m: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        def f(z: torch.Tensor) -> torch.Tensor:
            quantized, _, loss = m(z)
            return quantized.sum() + loss.sum()
        return f

    def without_loss(m: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        def f(z: torch.Tensor) -> torch.Tensor:
            quantized, _ = m(z)
            return quantized.sum()
        return f

    return {
        "vqgan": Peer("VectorQuantize(ema_update=False)", lambda s, q: vqp.VectorQuantize(
            dim=s.D, codebook_size=s.K, accept_image_fmap=True, ema_update=False, learnable_codebook=True,
            commitment_weight=0.25), with_loss),
        "vqgan-ema": Peer("VectorQuantize(decay=0.99)", lambda s, q: vqp.VectorQuantize(
            dim=s.D, codebook_size=s.K, accept_image_fmap=True, decay=0.99, commitment_weight=0.25), with_loss),
        "simvq": Peer("SimVQ", lambda s, q: vqp.SimVQ(dim=s.D, codebook_size=s.K, channel_first=True), with_loss),
        # LFQ and FSQ define their own code width (log2 K bits; one channel per level): ours says it.
        "lfq": Peer("LFQ", lambda s, q: vqp.LFQ(dim=q.latent_channels, codebook_size=s.K, channel_first=True,
                                                entropy_loss_weight=0.1, commitment_loss_weight=0.25), with_loss),
        "fsq": Peer("FSQ", lambda s, q: vqp.FSQ(levels=list(q.levels), channel_first=True), without_loss),
        # configured as tests/methods/test_references.py checks them equal to ours (same outputs and gradients)
        "rvq": Peer("ResidualVQ", lambda s, q: vqp.ResidualVQ(
            dim=q.latent_channels, num_quantizers=q.levels, codebook_size=q.level_size, decay=0.99, eps=1e-5,
            commitment_weight=0.25, rotation_trick=False, threshold_ema_dead_code=0), rows_with_losses),
        # exact entropies over all K codes where ours defaults to the paper's per-bit approximation
        "bsq": Peer("LFQ(spherical=True)", lambda s, q: vqp.LFQ(
            dim=q.latent_channels, codebook_size=s.K, spherical=True, channel_first=True, entropy_loss_weight=0.1,
            diversity_gamma=1.0, commitment_loss_weight=0.0), with_loss),
        "vqgan-lc": Peer("SimVQ(frozen_codebook_dim)", _simvq_over_frozen_features, with_loss),
        # product quantisation: one head per group of channels, each with its own codebook
        "pq": Peer("VectorQuantize(heads=G, separate_codebook_per_head=True)", lambda s, q: vqp.VectorQuantize(
            dim=q.latent_channels, codebook_dim=q.sub_dim, heads=q.groups, separate_codebook_per_head=True,
            codebook_size=q.level_size, accept_image_fmap=True, ema_update=False, learnable_codebook=True,
            commitment_weight=0.25), with_loss),
        # optvq: vector-quantize-pytorch has no optimal-transport assignment, so no peer
        # gsq: one head per group, every head searching the ONE cosine-similarity codebook
        "gsq": Peer("VectorQuantize(heads=G, use_cosine_sim=True)", lambda s, q: _spherical_heads(q, separate=False),
                    with_loss),
        # mgvq: one cosine-similarity codebook per head (its nested group masking has no peer)
        "mgvq": Peer("VectorQuantize(heads=G, separate_codebook_per_head=True, use_cosine_sim=True)",
                     lambda s, q: _spherical_heads(q, separate=True), with_loss),
        # fsp: the same levels, activation and moment preset (tests/methods/test_fsp.py: same outputs)
        "fsp": Peer("FSP", lambda s, q: vqp.FSP(
            levels=list(q.levels), channel_first=True, act_name=q.options.act, quantize_rate=q.options.quantize_rate,
            need_inv_act=q.options.inverse_act, vector_norm=q.options.vector_norm), fsp_output_and_loss),
        # ifsq: vector-quantize-pytorch's FSQ has no distribution-matching activation, so no peer
        # vqbridge: a copy of our bridge as the peer's vq_bridge (it takes the (1, K, dim) codebook as it is);
        # straight-through and no dead-code replacement, as tests/methods/test_vqbridge.py checks them equal
        "vqbridge": Peer("VectorQuantize(vq_bridge=...)", _vector_quantize_with_our_bridge, with_loss),
        # DiVeQ's directional reparameterisation with our noise variance; the peer insists on dead-code
        # replacement, so its threshold is one its EMA counts (from 1, decay 0.8) reach only after ~93 steps
        "diveq": Peer("VectorQuantize(directional_reparam=True)", lambda s, q: vqp.VectorQuantize(
            dim=q.latent_channels, codebook_size=s.K, accept_image_fmap=True, directional_reparam=True,
            directional_reparam_variance=q.options.noise_variance, threshold_ema_dead_code=1e-9), with_loss),
        # sf-diveq: vector-quantize-pytorch has no space-filling variant, so no peer
    }


def _spherical_heads(q: methods.Quantizer, separate: bool) -> torch.nn.Module:
    """gsq's and mgvq's peer: G heads of dim / G channels on the unit sphere, straight-through (the
    rotation trick off), the commitment term weighted by our beta. Its cosine codebook is a buffer
    (vector-quantize-pytorch refuses a learnable one with cosine similarity), so it is held fixed
    (`ema_update=False`): the peer has no codebook term (tests/methods/test_gsq.py, test_mgvq.py)."""
    import vector_quantize_pytorch as vqp

    return vqp.VectorQuantize(dim=q.latent_channels, codebook_dim=q.sub_dim, heads=q.groups,
                              separate_codebook_per_head=separate, codebook_size=q.level_size, use_cosine_sim=True,
                              accept_image_fmap=True, ema_update=False, rotation_trick=False,
                              threshold_ema_dead_code=0, commitment_weight=q.options.beta)


def rows_with_losses(m: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """ResidualVQ takes channel-last rows (its image mode fails on the tested version) and returns one
    commitment loss per level."""
    def f(z: torch.Tensor) -> torch.Tensor:
        b, c, h, w = z.shape
        quantized, _, losses = m(z.permute(0, 2, 3, 1).reshape(b, h * w, c))
        return quantized.sum() + losses.sum()
    return f


def _simvq_over_frozen_features(s: Shape, q: methods.Quantizer) -> torch.nn.Module:
    """SimVQ over our frozen features and a linear transform: VQGAN-LC's quantizer (its loss weights
    as the parity test sets them, 0.33 on the codebook term and 1 on the commitment)."""
    import vector_quantize_pytorch as vqp

    features = q.frozen_codebook.shape[1]
    peer = vqp.SimVQ(dim=q.latent_channels, codebook_size=s.K, frozen_codebook_dim=features,
                     codebook_transform=torch.nn.Linear(features, q.latent_channels), rotation_trick=False,
                     channel_first=True, input_to_quantize_commit_loss_weight=1 / 0.33, commitment_weight=0.33)
    with torch.no_grad():
        peer.frozen_codebook.copy_(q.frozen_codebook)
    return peer


def fsp_output_and_loss(m: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """FSP returns (output, indices, moment loss, info)."""
    def f(z: torch.Tensor) -> torch.Tensor:
        quantized, _, loss, _ = m(z)
        return quantized.sum() + loss
    return f


def _vector_quantize_with_our_bridge(s: Shape, q: methods.Quantizer) -> torch.nn.Module:
    """VectorQuantize over a copy of our bridge (same weights) and our codes, in the joint-loss form the
    parity test compares at beta 0.25."""
    import copy

    import vector_quantize_pytorch as vqp

    peer = vqp.VectorQuantize(dim=q.latent_channels, codebook_size=s.K, accept_image_fmap=True,
                              vq_bridge=copy.deepcopy(q.bridge), learnable_codebook=True, ema_update=False,
                              rotation_trick=False, threshold_ema_dead_code=0, commitment_weight=0.25)
    with torch.no_grad():
        peer._codebook.embed.copy_(q.codes[None])
    return peer
