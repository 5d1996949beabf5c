"""The speed benchmark's peer and comparison table: the only place in bench.speed that names methods.

- PEERS: vector-quantize-pytorch's implementation of the same method, timed beside ours.
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
    }

