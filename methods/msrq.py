"""MSRQ: multi-scale residual quantisation, VAR's tokenizer quantizer.

Visual Autoregressive Modeling: Scalable Image Generation via Next-Scale Prediction (Tian, Jiang, Yuan,
Peng, Wang, NeurIPS 2024), https://arxiv.org/abs/2404.02905, Algorithms 1 and 2; released code
github.com/FoundationVision/VAR, `models/quant.py` (`VectorQuantizer2`), read for this file (docs/methods.md
says what follows it and where vqbench departs).

One codebook of K codes (dim channels) is shared by a schedule of scales s_1 < ... < s_S = H (the
latent is H x H). With f the latent and the residual r = f (detached) at first, for each scale:

    idx_k = nearest codes of area-downsample(r, s_k x s_k)          (s_S: r itself)
    h_k   = phi_k(bicubic-upsample(codes[idx_k], H x H))             (s_S: no upsampling)
    f_hat = f_hat + h_k;   r = r - h_k

phi_k is VAR's residual refinement, (1 - ratio) h + ratio conv3x3(h), with `quant_resi_convs` convs
shared across the scales by VAR's rule (the conv whose tick in [0, 1] is nearest to k / (S - 1));
ratio 0 makes it the identity. The loss is VAR's, the mean over scales of
beta ||sg[f_hat_k] - f||^2 + ||f_hat_k - sg[f]||^2 (the running sum f_hat_k after scale k), and z_q
is f_hat with a straight-through gradient to f.

The schedule: `scales` when given (its last entry must be the latent's side), else VAR's
(1, 2, 3, 4, 5, 6, 8, 10, 13, 16) below H followed by H itself, so at a 16 x 16 latent it is VAR's.

Indices. The pyramid has T = sum_k s_k^2 tokens (VAR: 680 at 16 x 16). The harness takes indices
shaped (B, H, W) or (B, H, W, L), so the pyramid is packed: the tokens in VAR's order (scale by scale,
raster within a scale) fill L = ceil(T / (H W)) slots per position, level l holding tokens
l H W ... (l + 1) H W - 1 in raster order; the last level's unused slots repeat the sequence's first
tokens (valid codes, so code usage counts them: at 16 x 16, 88 of 768 slots). `decode_indices` unpacks
the first T and rebuilds f_hat in forward's order, exactly forward's z_q in eval mode. Bits per image
are the pyramid's, T log2 K (`bits_per_image`), not L H W log2 K.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.core.errors import UserError
from bench.core.option_ranges import AT_LEAST_ONE, NON_NEGATIVE, at_least, interval, option

from .base import Quantizer, QuantOut, flatten_latent, nearest_codes, straight_through
from .registry import register_method

VAR_SCALES = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)  # VAR's v_patch_nums (models/vqvae.py)


@dataclass
class MSRQOptions:
    # Side of each scale's token map, smallest first, the last = the latent's side; None: VAR's below it.
    scales: tuple[int, ...] | None = option(None, at_least(1))
    beta: float = option(0.25, NON_NEGATIVE)  # commitment weight (VAR's 0.25)
    quant_resi: float = option(0.5, interval(0, 1))  # phi's conv share; 0: phi is the identity (VAR: 0.5)
    quant_resi_convs: int = option(4, AT_LEAST_ONE)  # convs shared across the scales (VAR's share_quant_resi=4)
    znorm: bool = False  # nearest code by cosine instead of L2 (VAR's using_znorm, off by default)


def schedule(side: int, scales: tuple[int, ...] | None) -> tuple[int, ...]:
    """The scales for a side x side latent: `scales` checked, else VAR's below `side`, then `side`."""
    if scales is None:
        return tuple(s for s in VAR_SCALES if s < side) + (side,)
    if list(scales) != sorted(set(scales)) or scales[-1] != side:
        raise UserError(f"msrq: scales must increase strictly and end at the latent's side {side}, got {tuple(scales)}")
    return tuple(scales)


def phi_index(scale: int, n_scales: int, n_convs: int) -> int:
    """VAR's sharing rule: ticks evenly in (0, 1) (1/(3n) .. 1 - 1/(3n) for n = 4, else 1/(2n) ..), the
    conv whose tick is nearest to scale / (S - 1)."""
    at = scale / (n_scales - 1) if n_scales > 1 else 0.0
    margin = 1 / 3 / n_convs if n_convs == 4 else 1 / 2 / n_convs
    # numpy's linspace, as VAR: at 10 scales scale 2 lies exactly between two ticks, and the rounding of
    # this linspace decides which conv it takes
    ticks = np.linspace(margin, 1 - margin, n_convs)
    return int(np.abs(ticks - at).argmin())


class Phi(nn.Module):
    """(1 - ratio) h + ratio conv3x3(h), VAR's quant_resi."""

    def __init__(self, dim: int, ratio: float) -> None:
        super().__init__()
        self.ratio = ratio
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, h: Tensor) -> Tensor:
        return h * (1 - self.ratio) + self.conv(h) * self.ratio


@register_method("msrq", "MSRQ (VAR): residuals quantised at a schedule of scales, one shared codebook, index pyramid")
class MSRQQuantizer(Quantizer):
    """Multi-scale residual quantisation (https://arxiv.org/abs/2404.02905)."""

    Options = MSRQOptions

    bounded_memory = True

    @classmethod
    def parameter_count(cls, codebook_size: int, dim: int, options: MSRQOptions) -> int:
        convs = options.quant_resi_convs * (9 * dim * dim + dim) if options.quant_resi > 0 else 0
        return codebook_size * dim + convs

    def __init__(self, codebook_size: int, dim: int, options: MSRQOptions) -> None:
        super().__init__()
        self.options = options
        self.codebook_size = codebook_size
        self.latent_channels = dim
        self.embedding = nn.Embedding(codebook_size, dim)
        self.embedding.weight.data.uniform_(-1.0 / codebook_size, 1.0 / codebook_size)  # VAR's eini < 0 form
        if options.quant_resi > 0:
            self.phis = nn.ModuleList(Phi(dim, options.quant_resi) for _ in range(options.quant_resi_convs))
        self._side: int | None = None  # the latent side last seen, for index_level_sizes

    def _phi(self, h: Tensor, k: int, n_scales: int) -> Tensor:
        if self.options.quant_resi <= 0:
            return h
        return self.phis[phi_index(k, n_scales, self.options.quant_resi_convs)](h)

    def _term(self, idx: Tensor, b: int, scale: int, side: int, k: int, n_scales: int) -> Tensor:
        """h_k from one scale's (B * s * s) indices: codes, upsampled to the latent (not the last), phi."""
        h = self.embedding(idx.view(b, scale, scale)).permute(0, 3, 1, 2)
        if scale != side:
            h = F.interpolate(h, size=(side, side), mode="bicubic")
        return self._phi(h.contiguous(), k, n_scales)

    def forward(self, z: Tensor) -> QuantOut:
        b, _, h, w = z.shape
        if h != w:
            raise UserError(f"msrq: the latent must be square, got {h} x {w}")
        scales = schedule(h, self.options.scales)
        self._side = h
        f = z.float()
        rest = f.detach().clone()
        f_hat = torch.zeros_like(rest)
        codes = self.embedding.weight
        search = F.normalize(codes.detach(), dim=1) if self.options.znorm else codes.detach()
        codebook_loss = commitment = f.new_zeros(())
        tokens = []
        for k, scale in enumerate(scales):
            small = rest if scale == h else F.interpolate(rest, size=(scale, scale), mode="area")
            rows = flatten_latent(small)
            idx = nearest_codes(F.normalize(rows, dim=1) if self.options.znorm else rows, search)[:, 0]
            term = self._term(idx, b, scale, h, k, len(scales))
            f_hat = f_hat + term
            rest = rest - term.detach()
            commitment = commitment + F.mse_loss(f_hat.detach(), f)
            codebook_loss = codebook_loss + F.mse_loss(f_hat, f.detach())
            tokens.append(idx.view(b, -1))
        commitment, codebook_loss = commitment / len(scales), codebook_loss / len(scales)
        loss = self.options.beta * commitment + codebook_loss
        z_q = straight_through(z, f_hat.to(z.dtype))
        return QuantOut(z_q, self._pack(torch.cat(tokens, dim=1), h), loss,
                        {"codebook": codebook_loss.detach(), "commitment": commitment.detach()})

    @staticmethod
    def _levels(tokens: int, side: int) -> int:
        return -(-tokens // (side * side))

    def _pack(self, seq: Tensor, side: int) -> Tensor:
        """(B, T) pyramid tokens -> (B, H, W, L): level l holds tokens l H W .. (l + 1) H W - 1."""
        b, t = seq.shape
        slots = self._levels(t, side) * side * side
        padded = torch.cat([seq, seq[:, : slots - t]], dim=1) if slots > t else seq
        return padded.view(b, -1, side, side).permute(0, 2, 3, 1).contiguous()

    def index_level_sizes(self) -> tuple[int, ...]:
        side = self._side or (self.options.scales[-1] if self.options.scales else None)
        if side is None:  # no latent seen yet: the layout is unknown
            return (self.codebook_size,)
        scales = schedule(side, self.options.scales)
        return (self.codebook_size,) * self._levels(sum(s * s for s in scales), side)

    @classmethod
    def budget_bits(cls, codebook_size: int, dim: int, options: MSRQOptions, side: int) -> float:
        return sum(s * s for s in schedule(side, options.scales)) * math.log2(codebook_size)

    def bits_per_image(self, height: int, width: int) -> float:
        """The pyramid's T = sum_k s_k^2 tokens, each log2 K bits (the packing's repeated slots carry none)."""
        return sum(s * s for s in schedule(height, self.options.scales)) * math.log2(self.codebook_size)

    def decode_indices(self, indices: Tensor) -> Tensor:
        b, side, _, _ = indices.shape
        scales = schedule(side, self.options.scales)
        seq = indices.permute(0, 3, 1, 2).reshape(b, -1)
        f_hat = torch.zeros(b, self.latent_channels, side, side, device=indices.device)
        start = 0
        for k, scale in enumerate(scales):
            idx = seq[:, start : start + scale * scale].reshape(-1)
            start += scale * scale
            f_hat = f_hat + self._term(idx, b, scale, side, k, len(scales))
        return f_hat


__all__ = ["VAR_SCALES", "MSRQOptions", "MSRQQuantizer", "phi_index", "schedule"]
