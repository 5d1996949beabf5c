"""fsp against vector-quantize-pytorch 1.32.0's FSP (built as the speed benchmark's peer): the same
codes, indices, outputs, losses and input gradients, with the noise off (eval, quantize_rate=1) and
with the same noise (the same seed before each forward). Tolerance: indices equal; outputs and
losses to 1e-6 absolute (ours is the bin midpoint exactly, the peer's a + (q - a) is q up to one
rounding); gradients to 1e-5 relative. And the training noise, measured: one bin wide, uniform."""
import math

import pytest
import torch

import methods
from bench.core.errors import UserError
from bench.runs import bit_budget
from methods.fsp import ACTIVATIONS
from tests.methods.checks import assert_checkpoint_restores_state

SHAPE_K = 64


def _pair(k: int = SHAPE_K, **options):
    pytest.importorskip("vector_quantize_pytorch")
    from bench.speed.peers import peers
    from bench.speed.shapes import Shape

    ours = methods.create("fsp", k, 8, **options)
    peer = peers()["fsp"].make(Shape(B=2, H=8, W=8, D=8, K=k), ours)
    return ours, peer


def _latent(channels: int, seed: int = 0, scale: float = 1.5) -> torch.Tensor:
    return torch.randn(2, channels, 8, 8, generator=torch.Generator().manual_seed(seed)) * scale


def _run_both(ours, peer, z, seed: int = 5):
    z1, z2 = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    torch.manual_seed(seed)
    out = ours(z1)
    torch.manual_seed(seed)
    q_peer, idx_peer, loss_peer, info = peer(z2)
    (out.z_q.square().sum() + out.loss).backward()
    (q_peer.square().sum() + loss_peer).backward()
    assert torch.equal(out.indices, idx_peer.long())
    torch.testing.assert_close(out.z_q, q_peer, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.loss, loss_peer, rtol=0, atol=1e-6)
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-5, atol=1e-6)
    return out, info


@pytest.mark.parametrize("inverse_act", [False, True])
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_same_as_the_peer_without_noise(act, inverse_act):
    ours, peer = _pair(1000, act=act, inverse_act=inverse_act)  # levels 8, 5, 5, 5
    ours.eval(), peer.eval()
    out, _ = _run_both(ours, peer, _latent(4))
    torch.testing.assert_close(ours.decode_indices(out.indices), peer.indices_to_codes(out.indices), rtol=0, atol=1e-6)


@pytest.mark.parametrize("quantize_rate", [0.0, 0.5, 1.0])
def test_same_as_the_peer_in_training_with_the_same_noise(quantize_rate):
    ours, peer = _pair(quantize_rate=quantize_rate)  # levels 8, 8
    ours.train(), peer.train()
    out, info = _run_both(ours, peer, _latent(2, seed=1))
    if quantize_rate < 1:
        torch.testing.assert_close(out.logs["accept_rate"], info["p_accept_prob"], rtol=0, atol=0)


@pytest.mark.parametrize("vector_norm", ["var_tanh", "kurt"])
def test_the_moment_regulariser_is_the_peers(vector_norm):
    ours, peer = _pair(vector_norm=vector_norm)
    ours.train(), peer.train()
    out, _ = _run_both(ours, peer, _latent(2, seed=2))
    assert float(out.loss.detach()) > 0 and float(out.logs["moment_loss"]) == float(out.loss.detach())


def test_the_peers_default_regulariser_is_an_option_and_ours_defaults_to_the_authors():
    assert methods.create("fsp", SHAPE_K, 8).options.vector_norm == "none"
    assert float(methods.create("fsp", SHAPE_K, 8)(_latent(2)).loss) == 0.0


def test_training_noise_is_one_bin_wide_and_uniform_around_the_activation():
    """quantize_rate 0: every element is F(z) + U(-1/2L, 1/2L), kept at F(z) when it leaves (0, 1)."""
    q = methods.create("fsp", 64, 8).train()  # levels 8, 8
    z = torch.randn(1, 2, 128, 128, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    out = q(z)
    noise = (out.z_q * math.sqrt(1 / 12) + 0.5 - (torch.tanh(z) + 1) / 2).flatten()
    half_bin = 1 / 16
    assert float(noise.abs().max()) <= half_bin + 1e-6
    moved = noise[noise != 0]
    assert len(moved) / len(noise) == pytest.approx(float(out.logs["accept_rate"]), abs=1e-3)
    assert float(moved.mean()) == pytest.approx(0.0, abs=0.02 * half_bin)  # its standard error: 0.003 half_bin
    assert float(moved.std()) == pytest.approx(half_bin / math.sqrt(3), rel=0.03)  # the std of U(-h, h)


def test_quantize_rate_is_the_share_of_elements_at_their_bin_midpoint():
    q = methods.create("fsp", 64, 8, quantize_rate=0.3).train()
    z = torch.randn(1, 2, 64, 64, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(1)
    out = q(z)
    activated = out.z_q * math.sqrt(1 / 12) + 0.5
    at_midpoint = (activated * 8 - 0.5 - (activated * 8 - 0.5).round()).abs() < 1e-5
    assert float(at_midpoint.float().mean()) == pytest.approx(0.3, abs=0.03)


def test_eval_output_is_the_bins_midpoint_and_decodes_bit_for_bit():
    q = methods.create("fsp", 1000, 8).eval()
    z = _latent(4, seed=3, scale=3.0)
    with torch.no_grad():
        out = q(z)
    level = ((torch.tanh(z) + 1) / 2 * torch.tensor([8, 5, 5, 5]).view(1, 4, 1, 1)).floor()
    torch.testing.assert_close(out.z_q, ((level + 0.5) / torch.tensor([8.0, 5, 5, 5]).view(1, 4, 1, 1) - 0.5)
                               / math.sqrt(1 / 12), rtol=0, atol=1e-6)
    torch.testing.assert_close(q.decode_indices(out.indices), out.z_q, rtol=0, atol=0)
    assert int(out.indices.max()) < 1000 and q.index_level_sizes() == (1000,)


def test_unknown_activation_or_preset_is_refused_in_one_line():
    with pytest.raises(UserError, match="fsp: act must be one of tanh, sigmoid, normal, laplace, cauchy, got 'relu'"):
        methods.create("fsp", 64, 8, act="relu")
    with pytest.raises(UserError, match="fsp: vector_norm must be one of none, var, kurt") as err:
        methods.create("fsp", 64, 8, vector_norm="batch_norm")
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="option 'quantize_rate'"):
        methods.create("fsp", 64, 8, quantize_rate=1.5)


def test_bits_per_position_and_the_budget_rule_are_fsqs():
    q = methods.create("fsp", 1000, 8)
    assert q.bits_per_image(4, 4) == pytest.approx(16 * math.log2(1000))
    assert bit_budget.choose("fsp", {}, 512, "smoke").codebook_size == bit_budget.choose("fsq", {}, 512, "smoke").codebook_size


def test_checkpoint_restores_state():
    assert_checkpoint_restores_state("fsp")
