"""The quantizer contract, parametrised over the registry: every method, present and future, is
checked here without a line of its own."""
import pytest
import torch

import methods
from methods.base import QuantOut

K, DIM = 64, 8


def _make(name: str) -> methods.Quantizer:
    torch.manual_seed(0)
    return methods.create(name, K, DIM)


def _latent(q: methods.Quantizer, batch: int = 2, size: int = 4) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(batch, q.latent_channels, size, size, requires_grad=True)


@pytest.fixture(params=methods.available())
def name(request) -> str:
    return request.param


def test_forward_shapes_and_types(name):
    q = _make(name)
    z = _latent(q)
    out = q(z)
    assert isinstance(out, QuantOut)
    assert out.z_q.shape == z.shape
    assert out.indices.dtype == torch.long
    assert out.indices.shape[:3] == (2, 4, 4) and out.indices.ndim in (3, 4)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    for key, value in out.logs.items():
        assert torch.is_tensor(value) and value.ndim == 0, key


def test_indices_in_range(name):
    q = _make(name)
    idx = q(_latent(q)).indices
    assert int(idx.min()) >= 0 and int(idx.max()) < q.codebook_size


def test_code_groups_cover_valid_ranges(name):
    q = _make(name)
    for lo, hi in q.code_groups.values():
        assert 0 <= lo < hi <= q.codebook_size


def test_decode_indices_reproduces_z_q_in_eval_mode(name):
    q = _make(name).eval()
    with torch.no_grad():
        out = q(_latent(q))
        decoded = q.decode_indices(out.indices)
    torch.testing.assert_close(decoded, out.z_q, rtol=1e-5, atol=1e-5)


def test_gradient_reaches_the_input(name):
    q = _make(name).train()
    z = _latent(q)
    out = q(z)
    (out.z_q.square().sum() + out.loss).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_gradient_reaches_the_encoder_through_the_autoencoder(name):
    from bench.models.autoencoder import VQAutoencoder

    torch.manual_seed(0)
    q = methods.create(name, K, DIM)
    model = VQAutoencoder(q, ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), resolution=16, z_channels=8)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    xrec, out = model(x)
    ((x - xrec).abs().mean() + out.loss).backward()
    g = model.encoder.conv_in.weight.grad
    assert g is not None and g.abs().sum() > 0
    assert xrec.shape == x.shape
