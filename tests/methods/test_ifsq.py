"""ifsq: the official iFSQ bound for odd levels, vqbench's L equal bins for even ones, the parity with
vector-quantize-pytorch's FSQ bound with the activation swapped, and the activation's stated
property measured: a Gaussian latent uses the bins about evenly, where fsq's tanh does not.
vector-quantize-pytorch 1.32.0's FSQ has no iFSQ option (its bound is tanh only), so the parity is
its `FSQ.bound` (eps 0, as the official iFSQ bound) on the input scaled by a/2:
2 sigmoid(a z) - 1 = tanh(a z / 2). Tolerance: indices equal, outputs to 1e-6 absolute, input
gradients to 1e-5 relative."""
import math

import pytest
import torch

import methods
from bench.core.errors import UserError
from bench.runs import bit_budget


def _latent(channels: int, seed: int = 0, scale: float = 1.5, side: int = 8) -> torch.Tensor:
    return torch.randn(4, channels, side, side, generator=torch.Generator().manual_seed(seed)) * scale


@pytest.mark.parametrize("levels", [(5, 5, 5), (17, 17), (7, 3)])
def test_odd_levels_follow_the_official_bound(levels):
    """Official GroupFSQ.simple_bound: round((2 sigmoid(1.6 z) - 1) (L - 1) / 2) / (L // 2), written out here."""
    q = methods.create("ifsq", math.prod(levels), 8, levels=levels).train()
    z = _latent(len(levels))
    out = q(z)
    L = torch.tensor(levels).view(1, -1, 1, 1)
    rounded = ((2 * torch.sigmoid(1.6 * z) - 1) * (L - 1) / 2).round()
    basis = torch.cumprod(torch.tensor((1,) + levels[:-1]), 0).view(1, -1, 1, 1)
    assert torch.equal(out.indices, ((rounded + L // 2).long() * basis).sum(1))
    torch.testing.assert_close(out.z_q, rounded / (L // 2), rtol=0, atol=1e-6)


@pytest.mark.parametrize("levels", [(8, 4, 2), (6, 6)])
def test_even_levels_cut_the_activation_into_equal_bins(levels):
    """vqbench's extension: round(f(z) L / 2 - 1/2), L equal bins of (-1, 1) onto fsq's grid [-L/2, L/2 - 1]."""
    q = methods.create("ifsq", math.prod(levels), 8, levels=levels).train()
    z = _latent(len(levels))
    z[0, :, 0, 0], z[0, :, 0, 1] = 50.0, -50.0  # saturated: tanh is 1.0 in float, still in the top bin
    out = q(z)
    L = torch.tensor(levels).view(1, -1, 1, 1)
    activated = (2 * torch.sigmoid(1.6 * z) - 1).clamp(-1 + 2**-23, 1 - 2**-23)
    rounded = (activated * L / 2 - 0.5).round()
    basis = torch.cumprod(torch.tensor((1,) + levels[:-1]), 0).view(1, -1, 1, 1)
    assert torch.equal(out.indices, ((rounded + L // 2).long() * basis).sum(1))
    torch.testing.assert_close(out.z_q, rounded / (L // 2), rtol=0, atol=1e-6)
    assert int(out.indices[0, 0, 0]) == math.prod(levels) - 1 and int(out.indices[0, 0, 1]) == 0


@pytest.mark.parametrize("sigmoid_scale", [1.6, 2.0])
@pytest.mark.parametrize("k", [125, 4375])
def test_odd_levels_are_vector_quantize_fsqs_bound_with_the_activation_swapped(k, sigmoid_scale):
    """FSQ.bound(a/2 z, eps=0): its tanh bound without the eps its forward adds (1e-3), on a/2 z."""
    import vector_quantize_pytorch as vqp

    ours = methods.create("ifsq", k, 8, sigmoid_scale=sigmoid_scale).train()
    peer = vqp.FSQ(levels=list(ours.levels))
    z = _latent(len(ours.levels), seed=1)
    z1, z2 = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    out = ours(z1)
    codes = peer.bound(z2.permute(0, 2, 3, 1) * (sigmoid_scale / 2), eps=0.0)
    assert torch.equal(out.indices, peer.codes_to_indices(codes).long())
    torch.testing.assert_close(out.z_q, codes.permute(0, 3, 1, 2), rtol=0, atol=1e-6)
    out.z_q.square().sum().backward()
    codes.square().sum().backward()
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-5, atol=1e-6)


def _usage(name: str, z: torch.Tensor, levels: tuple[int, ...]) -> torch.Tensor:
    q = methods.create(name, math.prod(levels), 8, levels=levels).eval()
    with torch.no_grad():
        return torch.bincount(q(z).indices.flatten(), minlength=q.codebook_size).double() / z.numel()


def test_a_gaussian_latent_uses_the_bins_evenly_where_tanh_does_not():
    """The activation's stated property, measured on 200,000 N(0, 1) values (numbers in docs/methods.md).
    17 levels (the paper's 4 bits): the rounding grid's 15 inner levels each take 1/16 of f's range,
    the two outer ones 1/32; iFSQ's inner levels are used 0.99-1.09 x 1/16, tanh's (fsq) 0.79-1.38 x.
    8 levels (even, L equal bins): iFSQ 0.89-1.08 x 1/8; fsq 0.63-1.43 x. f's largest CDF distance
    from U(-1, 1) (Kolmogorov-Smirnov) is 0.017, tanh's 0.044."""
    z = torch.randn(1, 1, 400, 500, generator=torch.Generator().manual_seed(0))
    inner = _usage("ifsq", z, (17,))[1:-1] * 16
    assert 0.9 <= float(inner.min()) and float(inner.max()) <= 1.1, inner
    inner = _usage("fsq", z, (17,))[1:-1] * 16
    assert float(inner.min()) < 0.85 and float(inner.max()) > 1.3, inner  # tanh: outer levels over, middle under
    usage = _usage("ifsq", z, (8,)) * 8
    assert 0.85 <= float(usage.min()) and float(usage.max()) <= 1.15, usage
    usage = _usage("fsq", z, (8,)) * 8
    assert float(usage.min()) < 0.7 and float(usage.max()) > 1.3, usage
    y = torch.tanh(0.8 * z.double().flatten()).sort().values
    empirical = torch.arange(1, len(y) + 1, dtype=torch.float64) / len(y)
    ks_ifsq = float((empirical - (y + 1) / 2).abs().max())
    y = torch.tanh(z.double().flatten()).sort().values
    ks_tanh = float((empirical - (y + 1) / 2).abs().max())
    assert ks_ifsq < 0.02 < 0.04 < ks_tanh


def test_bad_levels_are_refused_in_one_line():
    with pytest.raises(UserError, match=r"'levels': each item must be >= 2, got \(1, 64\)") as err:
        methods.create("ifsq", 64, 8, levels=(1, 64))
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="^ifsq: codebook size 11 is not a product of levels"):
        methods.create("ifsq", 11, 8)


def test_even_levels_and_fsqs_k_mapping():
    q = methods.create("ifsq", 256, 8).eval()
    assert q.levels == (8, 8, 4) and q.latent_channels == 3
    z = torch.linspace(-8, 8, 4001).view(1, 1, 1, -1).expand(1, 3, 1, -1).contiguous()
    with torch.no_grad():
        out = q(z)
    assert [len(out.z_q[0, c].unique()) for c in range(3)] == [8, 8, 4]
    assert int(out.indices.min()) == 0 and int(out.indices.max()) == 255
    torch.testing.assert_close(q.decode_indices(out.indices), out.z_q, rtol=0, atol=0)


def test_bits_per_position_and_the_budget_rule_are_fsqs():
    assert methods.create("ifsq", 125, 8).bits_per_image(2, 2) == pytest.approx(4 * math.log2(125))
    assert bit_budget.choose("ifsq", {}, 512, "smoke").codebook_size == 256
