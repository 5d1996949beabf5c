"""The one encoder/decoder shared by every method (VQGAN's, from taming-transformers), and the
VQ autoencoder that puts a quantizer between them. Only the quantizer differs between methods."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from methods.base import Quantizer, QuantOut


def _norm(ch: int) -> nn.GroupNorm:
    # 32 groups as in VQGAN; fewer when a tiny preset has fewer channels than that.
    return nn.GroupNorm(num_groups=min(32, ch), num_channels=ch, eps=1e-6, affine=True)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention, as in VQGAN's middle blocks."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.norm = _norm(ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        # (batch, heads=1, positions, channels): the 4-D layout the fused CUDA kernels (flash, memory-
        # efficient, cuDNN) accept; 3-D inputs always take the unfused math path. One conv makes q, k
        # and v, so the weights (and released checkpoints' layout) stay those of one qkv projection.
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, 1, c, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)  # (b, 1, hw, c)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class Downsample(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # taming's asymmetric padding


class Upsample(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _stage(cin: int, cout: int, n_blocks: int, attn: bool, dropout: float) -> tuple[nn.ModuleList, nn.ModuleList]:
    blocks, attns = nn.ModuleList(), nn.ModuleList()
    for _ in range(n_blocks):
        blocks.append(ResBlock(cin, cout, dropout))
        attns.append(AttnBlock(cout) if attn else nn.Identity())
        cin = cout
    return blocks, attns


class Encoder(nn.Module):
    def __init__(self, *, in_channels: int, ch: int, ch_mult: Sequence[int], num_res_blocks: int,
                 attn_resolutions: Sequence[int], resolution: int, z_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.stages = nn.ModuleList()
        res, cin = resolution, ch
        for i, mult in enumerate(ch_mult):
            cout = ch * mult
            blocks, attns = _stage(cin, cout, num_res_blocks, res in attn_resolutions, dropout)
            stage = nn.Module()
            stage.blocks, stage.attns = blocks, attns
            stage.down = Downsample(cout) if i < len(ch_mult) - 1 else nn.Identity()
            self.stages.append(stage)
            cin = cout
            if i < len(ch_mult) - 1:
                res //= 2
        self.mid = nn.Sequential(ResBlock(cin, cin, dropout), AttnBlock(cin), ResBlock(cin, cin, dropout))
        self.norm_out = _norm(cin)
        self.conv_out = nn.Conv2d(cin, z_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for stage in self.stages:
            for block, attn in zip(stage.blocks, stage.attns):
                h = attn(block(h))
            h = stage.down(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, *, out_channels: int, ch: int, ch_mult: Sequence[int], num_res_blocks: int,
                 attn_resolutions: Sequence[int], resolution: int, z_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        cin = ch * ch_mult[-1]
        res = resolution // 2 ** (len(ch_mult) - 1)
        self.conv_in = nn.Conv2d(z_channels, cin, 3, padding=1)
        self.mid = nn.Sequential(ResBlock(cin, cin, dropout), AttnBlock(cin), ResBlock(cin, cin, dropout))
        self.stages = nn.ModuleList()
        for i, mult in reversed(list(enumerate(ch_mult))):
            cout = ch * mult
            # The decoder has one more block per level than the encoder, as in VQGAN.
            blocks, attns = _stage(cin, cout, num_res_blocks + 1, res in attn_resolutions, dropout)
            stage = nn.Module()
            stage.blocks, stage.attns = blocks, attns
            stage.up = Upsample(cout) if i > 0 else nn.Identity()
            self.stages.append(stage)
            cin = cout
            if i > 0:
                res *= 2
        self.norm_out = _norm(cin)
        self.conv_out = nn.Conv2d(cin, out_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.mid(self.conv_in(z))
        for stage in self.stages:
            for block, attn in zip(stage.blocks, stage.attns):
                h = attn(block(h))
            h = stage.up(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VQAutoencoder(nn.Module):
    """encoder -> quant_conv -> quantizer -> post_quant_conv -> decoder."""

    def __init__(self, quantizer: Quantizer, *, ch: int, ch_mult: Sequence[int], num_res_blocks: int,
                 attn_resolutions: Sequence[int], resolution: int, z_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        arch = dict(ch=ch, ch_mult=tuple(ch_mult), num_res_blocks=num_res_blocks,
                    attn_resolutions=tuple(attn_resolutions), resolution=resolution, z_channels=z_channels,
                    dropout=dropout)
        self.encoder = Encoder(in_channels=3, **arch)
        self.decoder = Decoder(out_channels=3, **arch)
        self.quantizer = quantizer
        self.quant_conv = nn.Conv2d(z_channels, quantizer.latent_channels, 1)
        self.post_quant_conv = nn.Conv2d(quantizer.latent_channels, z_channels, 1)
        self.downsample_factor = 2 ** (len(ch_mult) - 1)

    def encode(self, x: Tensor) -> QuantOut:
        z = self.quant_conv(self.encoder(x))
        # Code search and codebook losses run in float32 even under bf16 autocast: distances between
        # nearby codes are lost in bf16's 8-bit mantissa.
        with torch.autocast(device_type=z.device.type, enabled=False):
            return self.quantizer(z.float())

    def decode(self, z_q: Tensor) -> Tensor:
        return self.decoder(self.post_quant_conv(z_q))

    def decode_indices(self, indices: Tensor) -> Tensor:
        return self.decode(self.quantizer.decode_indices(indices))

    def forward(self, x: Tensor) -> tuple[Tensor, QuantOut]:
        q = self.encode(x)
        return self.decode(q.z_q), q

    @property
    def last_layer(self) -> Tensor:
        """Weight of the decoder's last layer: VQGAN's adaptive GAN weight balances gradients here."""
        return self.decoder.conv_out.weight
