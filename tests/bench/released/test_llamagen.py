"""LlamaGen VQ tokenizers: its key layout onto the shared autoencoder, reconstruction equal to its
forward, l2-normalised codes that decode from indices; what the shared network cannot be is refused."""
from __future__ import annotations

import pytest
import torch

import taming.modules.diffusionmodules.model  # noqa: E402,F401 - a test requirement (requirements/test.txt): fail, never skip, when absent

from bench.core.errors import UserError  # noqa: E402
from bench.released import load_released  # noqa: E402
from tests.bench.released import oracles  # noqa: E402

ATOL = 1e-5


@pytest.fixture(scope="module")
def llamagen():
    torch.manual_seed(0)
    return oracles.LlamaGenVQ(ch=32, ch_mult=(1, 2), blocks=2).eval()


def test_reconstruction_equals_llamagen_forward(tmp_path, llamagen):
    ckpt = oracles.save_llamagen(tmp_path / "vq_ds16_c2i.pt", llamagen.state_dict())
    released = load_released("llamagen", ckpt)
    x = oracles.images(3, 16)
    with torch.no_grad():
        ours, q = released.model(x)
        theirs, their_idx = llamagen(x)
        from_indices = released.model.decode_indices(q.indices)
    assert torch.allclose(ours, theirs, atol=ATOL), (ours - theirs).abs().max()
    assert torch.equal(q.indices.reshape(-1), their_idx)
    assert len(q.indices.unique()) > 1
    assert torch.allclose(from_indices, ours, atol=ATOL)
    assert torch.allclose(q.z_q.norm(dim=1), torch.ones(()), atol=1e-5)  # codes on the unit sphere
    d = released.description
    assert (d["method"], d["codebook_size"], d["embed_dim"], d["weights_key"]) == ("vqgan", 64, 8, "model")
    assert d["method_options"]["l2_normalize"] is True and d["method_options"]["legacy"] is False
    assert d["model"]["ch_mult"] == [1, 2] and d["model"]["num_res_blocks"] == 2
    assert d["model"]["attn_resolutions"] == [128] and d["resolution"] == 256  # attention at level 1 of 256 px
    assert "argparse.Namespace" in d["stand_ins"] and "quantize.codebook_used" in d["ignored_keys"]


def test_ema_weights_are_preferred_as_llamagen_s_own_script_does(tmp_path, llamagen):
    torch.manual_seed(5)
    other = oracles.LlamaGenVQ(ch=32, ch_mult=(1, 2), blocks=2).state_dict()
    ckpt = oracles.save_llamagen(tmp_path / "vq.pt", other, ema=llamagen.state_dict())
    released = load_released("llamagen", ckpt)
    x = oracles.images(1, 16)
    with torch.no_grad():
        assert torch.allclose(released.model(x)[0], llamagen(x)[0], atol=ATOL)
    assert released.description["weights_key"] == "ema"


def test_different_decoder_ch_mult_is_refused(tmp_path):
    model = oracles.LlamaGenVQ(ch=32, ch_mult=(1, 2), decoder_ch_mult=(1, 1))
    ckpt = oracles.save_llamagen(tmp_path / "vq.pt", model.state_dict())
    with pytest.raises(UserError, match=r"key 'decoder.conv_blocks.0.res.0.conv1.weight' has 32 output channels .* "
                                        r"decoder_ch_mult differs from its encoder_ch_mult"):
        load_released("llamagen", ckpt)


def test_bad_keys_are_named(tmp_path, llamagen):
    sd = dict(llamagen.state_dict())
    sd["encoder.conv_blocks.1.attn.0.v.bias"] = torch.zeros(63)
    with pytest.raises(UserError, match=r"key 'encoder.conv_blocks.1.attn.0.v.bias' has shape \(63,\), the "
                                        r"configuration needs \(64,\)"):
        load_released("llamagen", oracles.save_llamagen(tmp_path / "a.pt", sd))
    sd = dict(llamagen.state_dict())
    sd["encoder.conv_blocks.0.res.0.norm1.running_mean"] = torch.zeros(32)  # a batch-norm tokenizer
    with pytest.raises(UserError, match=r"could not place key 'encoder.conv_blocks.0.res.0.norm1.running_mean'"):
        load_released("llamagen", oracles.save_llamagen(tmp_path / "b.pt", sd))
    sd = dict(llamagen.state_dict())
    del sd["decoder.conv_blocks.1.res.2.conv2.bias"]
    with pytest.raises(UserError, match=r"missing key 'decoder.conv_blocks.1.res.2.conv2.bias'"):
        load_released("llamagen", oracles.save_llamagen(tmp_path / "c.pt", sd))
