"""BSQ: binary spherical quantisation.

Image and Video Tokenization with Binary Spherical Quantization (Zhao, Xiong, Krähenbühl, 2024),
https://arxiv.org/abs/2406.07548, Section 3 (released code: github.com/zhaoyue-zephyrus/bsq-vit).

The latent (d = log2 K channels, from quant_conv) is projected onto the unit sphere, u = z / |z|,
and each channel is binarised, q = sign(u) / sqrt(d): the codebook is the implicit set of the 2^d
corners of the hypercube scaled onto the sphere, so |q| = 1 and the quantisation error is bounded
(|u - q|^2 <= 2 - 2 / sqrt(d) whatever z is). The index is the binary number of the bits
(u_i > 0), channel 0 the most significant bit, as `lfq`. Gradient: straight-through from q to u,
and from u through the normalisation to z.

Entropy penalty (Section 3.2): with the soft assignment p(c | u) = softmax_c(2 tau c.u) over all
2^d codes,

    L_entropy = per_sample_weight * E_u[H(p(c | u))] - codebook_weight * H(E_u[p(c | u)]).

Because the codes are products of independent +-1/sqrt(d) bits, p(c | u) factorises over channels
and the per-sample entropy is computed exactly in O(d) per latent. The codebook entropy is
approximated by splitting the bits into groups of g and summing the entropies of the groups'
batch-mean distributions over their 2^g sub-codes (the paper's Eq. 8 with g = 1, what its best
released ImageNet models use; g = d is the exact entropy, with an (N, K) matrix). The loss is
entropy_weight * L_entropy + commitment_weight * E_u ||u - sg[q]||^2 (the squared error summed over
channels, as the released code; its ImageNet configurations set the commitment weight to 0).

K mapping: K = 2^d with d >= 1; `latent_channels` = d (the `dim` argument is not used).
The entropies use this worker's batch only (as `lfq`): the method has no state to keep in step.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.core.errors import UserError
from bench.core.option_ranges import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, option

from .base import Quantizer, QuantOut, flatten_latent, straight_through, unflatten_latent
from .lfq import entropy, power_of_two_message
from .registry import register_method


@dataclass
class BSQOptions:
    # Weight of the whole entropy penalty: the released configurations weigh the quantizer's loss by
    # 0.1 (their codebook_weight) with zeta = 1.
    entropy_weight: float = option(0.1, NON_NEGATIVE)
    per_sample_weight: float = option(1.0, NON_NEGATIVE)  # gamma_0: pushes each latent towards one code (confidence)
    codebook_weight: float = option(1.0, NON_NEGATIVE)  # gamma: pushes the batch to spread over all codes (usage)
    # tau of p(c | u) = softmax(2 tau c.u) (the released code's inv_temperature; 1 there). c.u lies
    # in [-1, 1], so tau = 1 gives soft assignments and a non-vanishing per-sample entropy gradient.
    inv_temperature: float = option(1.0, POSITIVE)
    # Bits per group in the codebook-entropy approximation: 1 is the paper's Eq. 8 (per-bit entropies);
    # log2 K is the exact entropy over all K codes (memory N x K). Must divide log2 K.
    entropy_group_size: int = option(1, AT_LEAST_ONE)
    commitment_weight: float = option(0.0, NON_NEGATIVE)  # beta of E ||u - sg[q]||^2; 0 in the released ImageNet configurations


@register_method("bsq", "BSQ: latent on the unit sphere, per-channel sign / sqrt(d), K = 2^d, entropy penalty")
class BSQQuantizer(Quantizer):
    """Binary spherical quantisation (https://arxiv.org/abs/2406.07548)."""

    Options = BSQOptions

    # With the default entropy_group_size the entropies take N x d x 2 values, not N x K.
    bounded_memory = True

    @classmethod
    def parameter_count(cls, codebook_size: int, dim: int, options: BSQOptions) -> int:
        return 0  # the codebook is implicit

    @classmethod
    def check(cls, codebook_size: int, dim: int, options: BSQOptions) -> None:
        if codebook_size < 2 or codebook_size & (codebook_size - 1):
            raise UserError(power_of_two_message("bsq", codebook_size))
        bits = codebook_size.bit_length() - 1
        g = options.entropy_group_size
        if bits % g:
            valid = [s for s in range(1, bits + 1) if bits % s == 0]
            raise UserError(f"bsq: entropy_group_size must divide log2 K = {bits}; valid sizes: "
                            f"{', '.join(map(str, valid))}; got {g}")

    def __init__(self, codebook_size: int, dim: int, options: BSQOptions) -> None:
        super().__init__()
        self.check(codebook_size, dim, options)
        self.options = options
        self.codebook_size = codebook_size
        self.bits = codebook_size.bit_length() - 1
        self.latent_channels = self.bits  # BSQ defines its own code dimension: d = log2 K
        self.scale = self.bits**-0.5
        self.register_buffer("bit_values", 2 ** torch.arange(self.bits - 1, -1, -1), persistent=False)
        g = options.entropy_group_size
        # The 2^g sub-codes of one group, +-1/sqrt(d) per bit (most significant bit first).
        sub = (torch.arange(2**g).unsqueeze(1) & 2 ** torch.arange(g - 1, -1, -1)) != 0
        self.register_buffer("group_codes", torch.where(sub, self.scale, -self.scale), persistent=False)

    def _bits_to_codes(self, idx: Tensor) -> Tensor:
        """(...,) int64 -> (..., d) codes in {-1/sqrt(d), 1/sqrt(d)}."""
        bits = (idx.unsqueeze(-1) & self.bit_values) != 0
        return torch.where(bits, self.scale, -self.scale)

    def forward(self, z: Tensor) -> QuantOut:
        u_rows = F.normalize(flatten_latent(z), dim=1)
        q_rows = torch.where(u_rows > 0, self.scale, -self.scale).to(u_rows.dtype)
        idx = ((u_rows > 0).long() * self.bit_values).sum(-1)
        commitment = (u_rows - q_rows).pow(2).sum(1).mean()
        loss = self.options.commitment_weight * commitment
        logs = {"commitment": commitment.detach()}
        if self.training:
            per_sample, codebook_entropy = self.entropies(u_rows)
            entropy_loss = self.options.per_sample_weight * per_sample - self.options.codebook_weight * codebook_entropy
            loss = loss + self.options.entropy_weight * entropy_loss
            logs.update(entropy=entropy_loss.detach(), per_sample_entropy=per_sample.detach(),
                        codebook_entropy=codebook_entropy.detach())
        u, q = unflatten_latent(u_rows, z), unflatten_latent(q_rows, z)
        z_q = straight_through(u, q)
        return QuantOut(z_q, idx.view(z.shape[0], z.shape[2], z.shape[3]), loss, logs)

    def entropies(self, u_rows: Tensor) -> tuple[Tensor, Tensor]:
        """(mean per-sample entropy, approximate entropy of the batch-mean distribution) of
        p(c | u) for unit rows (N, d), in nats. Both are sums over groups of g bits: exact for the
        per-sample entropy (p factorises over bits), the paper's approximation for the codebook one."""
        g = self.options.entropy_group_size
        groups = u_rows.float().view(u_rows.shape[0], self.bits // g, g)
        prob = (groups @ self.group_codes.t() * (2.0 * self.options.inv_temperature)).softmax(-1)  # (N, d/g, 2^g)
        return entropy(prob).sum(-1).mean(), entropy(prob.mean(0)).sum()

    def decode_indices(self, indices: Tensor) -> Tensor:
        return self._bits_to_codes(indices).permute(0, 3, 1, 2).contiguous()
