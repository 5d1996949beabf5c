"""VQGAN quantizer: nearest-neighbour vector quantisation with a straight-through estimator.

Taming Transformers for High-Resolution Image Synthesis (Esser, Rombach, Ommer, CVPR 2021),
https://arxiv.org/abs/2012.09841; the VQ layer is VQ-VAE's (van den Oord et al., 2017,
https://arxiv.org/abs/1711.00937).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from bench.core.errors import UserError
from bench.core.option_ranges import AT_LEAST_ONE, NON_NEGATIVE, UNIT_OPEN, option

from .base import Quantizer, QuantOut, codebook_commitment_loss, flatten_latent, nearest_codes, unflatten_latent
from .codebook_tricks import CodebookTrickOptions, CodebookTricks, quantized_output
from .registry import register_method


@dataclass
class VQGANOptions(CodebookTrickOptions):
    beta: float = option(0.25, NON_NEGATIVE)  # commitment weight, VQ-VAE's value
    # The original VQGAN code put beta on the codebook term, ||sg[z]-e||^2*beta + ||z-sg[e]||^2
    # (its `legacy=True`). Kept so published VQGAN numbers can be reproduced; off by default.
    legacy: bool = False
    # ViT-VQGAN (Yu et al., ICLR 2022, https://arxiv.org/abs/2110.04627, Section 3.2) improves code
    # usage with two changes, both off by default:
    # l2-normalised codes: latents and codes are projected onto the unit sphere before the search and
    # the losses, so nearest by L2 is nearest by cosine and no code is out of reach by its norm.
    l2_normalize: bool = False
    # Factorised codes: look codes up in a lower dimension (ViT-VQGAN: 768 -> 32 or 8) through a
    # linear projection of the latent, and project the code back up. None: no projection (the
    # codebook has the latent's dimension, `dim`).
    codebook_dim: int | None = option(None, AT_LEAST_ONE)
    # EMA decay of the usage counts that threshold_ema_dead_code compares with (this codebook learns
    # by gradient and keeps no EMA counts of its own; vqgan-ema and rvq use their codebook decay).
    usage_decay: float = option(0.99, UNIT_OPEN)


@register_method("vqgan", "VQGAN: nearest-neighbour VQ, straight-through, codebook + commitment loss")
class VQGANQuantizer(Quantizer):
    """VQGAN / VQ-VAE vector quantisation (https://arxiv.org/abs/2012.09841)."""

    Options = VQGANOptions

    bounded_memory = True

    @classmethod
    def parameter_count(cls, codebook_size: int, dim: int, options: VQGANOptions) -> int:
        code_dim = dim if options.codebook_dim is None else options.codebook_dim
        projections = 0 if options.codebook_dim is None else 2 * (dim * code_dim) + dim + code_dim
        return codebook_size * code_dim + projections

    @classmethod
    def check(cls, codebook_size: int, dim: int, options: VQGANOptions) -> None:
        if options.codebook_dim is not None and not 1 <= options.codebook_dim <= dim:
            raise UserError(f"vqgan: codebook_dim must be in [1, {dim}] (the latent's dimension), got {options.codebook_dim}")

    def __init__(self, codebook_size: int, dim: int, options: VQGANOptions) -> None:
        super().__init__()
        self.check(codebook_size, dim, options)
        self.options = options
        self.codebook_size = codebook_size
        self.latent_channels = dim
        code_dim = dim if options.codebook_dim is None else options.codebook_dim
        self.embedding = nn.Embedding(codebook_size, code_dim)
        # Taming's initialisation: uniform in +-1/K.
        self.embedding.weight.data.uniform_(-1.0 / codebook_size, 1.0 / codebook_size)
        if options.codebook_dim is not None:  # only then, so the default's state dict is unchanged
            self.project_in = nn.Linear(dim, code_dim)
            self.project_out = nn.Linear(code_dim, dim)
        tricks = CodebookTricks(codebook_size, options, options.usage_decay)
        if tricks.active:  # only then, for the same reason
            self.tricks = tricks

    def _codes(self) -> Tensor:
        w = self.embedding.weight
        return F.normalize(w, dim=1) if self.options.l2_normalize else w

    def forward(self, z: Tensor) -> QuantOut:
        factorised = self.options.codebook_dim is not None
        zl = unflatten_latent(self.project_in(flatten_latent(z)), z) if factorised else z
        if self.options.l2_normalize:
            zl = F.normalize(zl, dim=1)
        rows = flatten_latent(zl)
        tricks = getattr(self, "tricks", None)
        if self.training and tricks is not None and tricks.needs_init():
            tricks.init_(self.embedding.weight.data, rows.detach(), cosine=self.options.l2_normalize)
        codes = self._codes()
        idx = nearest_codes(rows, codes)[:, 0]
        q = unflatten_latent(F.embedding(idx, codes), zl)
        loss, logs = codebook_commitment_loss(q, zl, self.options.beta, self.options.legacy)
        z_q = quantized_output(zl, q, self.options.rotation_trick, self.training)
        if self.training and tricks is not None:
            # After the lookup: this step's loss and gradient belong to the codes it used; a replaced
            # code takes its new place from the next step on.
            tricks.after_step_(self.embedding.weight.data, rows.detach(), idx, cosine=self.options.l2_normalize)
        if factorised:
            z_q = unflatten_latent(self.project_out(flatten_latent(z_q)), z_q)
        indices = idx.view(z.shape[0], z.shape[2], z.shape[3])
        return QuantOut(z_q, indices, loss, logs)

    def decode_indices(self, indices: Tensor) -> Tensor:
        codes = F.embedding(indices, self._codes())
        if self.options.codebook_dim is not None:
            codes = self.project_out(codes)
        return codes.permute(0, 3, 1, 2).contiguous()
