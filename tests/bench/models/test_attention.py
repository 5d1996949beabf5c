"""The autoencoder's attention goes through F.scaled_dot_product_attention with 4-D (batch, heads,
positions, channels) tensors, the layout the fused CUDA kernels accept, and computes what it
computed before: VQGAN's single-head attention (softmax(q k^T / sqrt(c)) v over the spatial
positions, the oracle below), and the same parameters, so released checkpoints load unchanged."""
import math

import pytest
import torch
import torch.nn.functional as F

from bench.models.autoencoder import AttnBlock


def _vqgan_attention(block: AttnBlock, x: torch.Tensor) -> torch.Tensor:
    """The computation before this change (taming's AttnBlock, with one qkv conv): explicit matmuls."""
    b, c, h, w = x.shape
    q, k, v = block.qkv(block.norm(x)).chunk(3, dim=1)
    q = q.reshape(b, c, h * w).permute(0, 2, 1)  # (b, hw, c)
    k = k.reshape(b, c, h * w)  # (b, c, hw)
    weights = torch.softmax(torch.bmm(q, k) / math.sqrt(c), dim=2)  # (b, hw query, hw key)
    out = torch.bmm(v.reshape(b, c, h * w), weights.permute(0, 2, 1))  # (b, c, hw)
    return x + block.proj(out.reshape(b, c, h, w))


def _three_d_sdpa(block: AttnBlock, x: torch.Tensor) -> torch.Tensor:
    """The previous call: SDPA on 3-D (b, hw, c) tensors, which no fused kernel accepts."""
    b, c, h, w = x.shape
    q, k, v = block.qkv(block.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
    out = F.scaled_dot_product_attention(q, k, v)
    return x + block.proj(out.transpose(-1, -2).reshape(b, c, h, w))


@pytest.mark.parametrize("shape", [(2, 32, 8, 8), (3, 64, 4, 6), (1, 16, 1, 5)])
def test_sdpa_attention_equals_vqgans_to_float_rounding(shape):
    torch.manual_seed(0)
    block = AttnBlock(shape[1]).double()
    for p in block.parameters():  # away from the zero-ish init, so that attention does something
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    out = block(x)
    oracle = _vqgan_attention(block, x)
    torch.testing.assert_close(out, oracle, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out, _three_d_sdpa(block, x), rtol=1e-10, atol=1e-10)
    # and the gradients, of the input and of every weight
    grads = torch.autograd.grad(out.square().sum(), [x, *block.parameters()])
    oracle_grads = torch.autograd.grad(oracle.square().sum(), [x, *block.parameters()])
    for got, want in zip(grads, oracle_grads):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


def test_sdpa_attention_in_float32_matches_to_float32_rounding():
    torch.manual_seed(1)
    block = AttnBlock(64)
    x = torch.randn(2, 64, 16, 16)
    torch.testing.assert_close(block(x), _vqgan_attention(block, x), rtol=1e-5, atol=1e-5)


def test_sdpa_gets_four_dimensional_tensors(monkeypatch):
    seen = []
    real = F.scaled_dot_product_attention

    def spy(q, k, v, *args, **kwargs):
        seen.append((q.shape, k.shape, v.shape))
        return real(q, k, v, *args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    AttnBlock(32)(torch.randn(2, 32, 4, 5))
    assert seen == [((2, 1, 20, 32),) * 3]  # (batch, one head, positions, channels)


def test_parameters_keep_their_names_and_shapes():
    # The state-dict layout released checkpoints are converted into (bench/released): unchanged.
    assert {k: tuple(v.shape) for k, v in AttnBlock(32).state_dict().items()} == {
        "norm.weight": (32,), "norm.bias": (32,), "qkv.weight": (96, 32, 1, 1), "qkv.bias": (96,),
        "proj.weight": (32, 32, 1, 1), "proj.bias": (32,)}
