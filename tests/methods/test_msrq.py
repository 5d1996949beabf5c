"""msrq: VAR's multi-scale residual quantisation; its index pyramid packs, unpacks and decodes exactly."""
import math

import pytest
import torch
import torch.nn.functional as F

import methods
from bench.core.errors import UserError
from methods.msrq import VAR_SCALES, phi_index, schedule


def test_schedule_is_vars_below_the_latent_side():
    assert schedule(16, None) == VAR_SCALES
    assert schedule(8, None) == (1, 2, 3, 4, 5, 6, 8)
    assert schedule(4, (1, 4)) == (1, 4)
    with pytest.raises(UserError, match="end at the latent's side 8"):
        schedule(8, (1, 2, 4))


def test_phi_sharing_follows_vars_ticks():
    """4 convs over 10 scales (VAR's defaults): ticks 1/12, 13/36, 23/36, 11/12 against k / 9."""
    assert [phi_index(k, 10, 4) for k in range(10)] == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]
    assert [phi_index(k, 3, 2) for k in range(3)] == [0, 0, 1]  # ticks 1/4, 3/4 against 0, 1/2, 1


def test_the_pyramid_at_16x16_is_vars_680_tokens_and_decodes_exactly():
    torch.manual_seed(0)
    q = methods.create("msrq", 32, 4).eval()
    z = torch.randn(2, 4, 16, 16)
    with torch.no_grad():
        out = q(z)
        decoded = q.decode_indices(out.indices)
    assert out.indices.shape == (2, 16, 16, 3)  # 680 tokens in 3 levels of 256 slots
    assert q.index_level_sizes() == (32, 32, 32)
    assert q.bits_per_image(16, 16) == pytest.approx(680 * math.log2(32))
    torch.testing.assert_close(decoded, out.z_q, rtol=0, atol=0)
    seq = out.indices.permute(0, 3, 1, 2).reshape(2, -1)
    assert torch.equal(seq[:, 680:], seq[:, :88])  # the unused slots repeat the first tokens


def test_each_scale_quantises_the_area_downsampled_residual():
    """Without phi, the first token is the code nearest the latent's mean (area to 1 x 1); the second
    scale's tokens are the codes nearest the 2 x 2 area means of what the first left."""
    torch.manual_seed(1)
    q = methods.create("msrq", 16, 3, scales=(1, 2, 4), quant_resi=0.0).eval()
    z = torch.randn(1, 3, 4, 4)
    with torch.no_grad():
        seq = q(z).indices.permute(0, 3, 1, 2).reshape(-1)
    codes = q.embedding.weight.detach()
    first = torch.cdist(z.mean((2, 3)), codes).argmin(1)
    assert int(seq[0]) == int(first)
    rest = z - codes[first].view(1, 3, 1, 1)  # bicubic upsampling of a 1 x 1 map is constant
    second = torch.cdist(F.avg_pool2d(rest, 2).permute(0, 2, 3, 1).reshape(-1, 3), codes).argmin(1)
    assert torch.equal(seq[1:5], second)


def test_loss_is_vars_mean_over_scales():
    """mean over scales of beta ||sg[f_hat_k] - f||^2 + ||f_hat_k - sg[f]||^2, f_hat_k the sum of the first k
    scales' codes (quant_resi = 0: no phi), recomputed from the indices; gradients reach codes and latent."""
    torch.manual_seed(2)
    q = methods.create("msrq", 8, 2, scales=(1, 2), quant_resi=0.0, beta=0.25).train()
    z = torch.randn(1, 2, 2, 2, requires_grad=True)
    out = q(z)
    with torch.no_grad():
        seq = out.indices.permute(0, 3, 1, 2).reshape(-1)
        codes = q.embedding.weight
        f1 = codes[seq[0]].view(1, 2, 1, 1).expand(1, 2, 2, 2)
        f2 = f1 + codes[seq[1:5]].view(1, 2, 2, 2).permute(0, 3, 1, 2)
        mse = [F.mse_loss(f, z) for f in (f1, f2)]
    expected = sum(1.25 * m for m in mse) / 2  # beta x commitment + codebook, each the same mse
    assert float(out.loss.detach()) == pytest.approx(float(expected), rel=1e-5)
    out.loss.backward()
    assert q.embedding.weight.grad.abs().sum() > 0 and z.grad.abs().sum() > 0


def test_non_square_latent_is_refused():
    q = methods.create("msrq", 8, 2)
    with pytest.raises(UserError, match="square"):
        q(torch.randn(1, 2, 4, 3))
