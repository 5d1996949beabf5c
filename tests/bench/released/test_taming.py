"""taming checkpoints: vqbench's reconstruction of a taming VQModel / GumbelVQ checkpoint equals
taming's own forward on the same images; bad checkpoints are refused naming the key."""
from __future__ import annotations

import importlib.util
import sys
import types

import pytest
import torch
import torch.nn.functional as F

import taming.modules.diffusionmodules.model  # noqa: E402,F401 - a test requirement (requirements/test.txt): fail, never skip, when absent

from bench.core.errors import UserError  # noqa: E402
from bench.released import load_released  # noqa: E402
from tests.bench.released import oracles  # noqa: E402

ATOL = 1e-5


def released_layout(tmp_path, config, state_dict, name="vqgan"):
    """A download's layout: <name>/ckpts/last.ckpt beside <name>/configs/model.yaml."""
    ckpt = oracles.save_lightning(tmp_path / name / "ckpts" / "last.ckpt", state_dict)
    oracles.write_yaml(tmp_path / name / "configs" / "model.yaml", config)
    return ckpt


@pytest.fixture(scope="module")
def vq_model():
    # two levels with attention at 8 px, a channel change (nin_shortcut) and two res blocks
    config = oracles.taming_config(oracles.ddconfig(ch=32, ch_mult=(1, 2), attn=(8,), blocks=2), 24, 16)
    return config, oracles.build_taming(config)


def test_reconstruction_equals_taming_forward(tmp_path, vq_model):
    config, taming_model = vq_model
    assert "taming.main" not in sys.modules  # the import's stand-ins did not outlive it
    assert importlib.util.find_spec("pytorch_lightning") is not None or "pytorch_lightning" not in sys.modules
    ckpt = released_layout(tmp_path, config, taming_model.state_dict())
    released = load_released("taming", ckpt)  # the config is found in configs/ beside ckpts/
    x = oracles.images(3, 16)
    with torch.no_grad():
        ours, q = released.model(x)
        theirs, _ = taming_model(x)
        _, _, (_, _, their_idx) = taming_model.encode(x)
        from_indices = released.model.decode_indices(q.indices)
    assert torch.allclose(ours, theirs, atol=ATOL), (ours - theirs).abs().max()
    assert torch.equal(q.indices.reshape(-1), their_idx.reshape(-1))
    assert len(q.indices.unique()) > 1  # the images use several codes: the comparison means something
    assert torch.allclose(from_indices, ours, atol=ATOL)
    d = released.description
    assert (d["source"], d["kind"], d["method"], d["codebook_size"], d["embed_dim"]) == ("released", "taming", "vqgan", 24, 16)
    assert d["method_options"]["legacy"] is True and d["method_options"]["beta"] == 0.25
    assert d["model"]["attn_resolutions"] == [8] and d["resolution"] == 16
    assert d["ignored_keys"]["loss."].startswith("10 keys")
    assert "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint" in d["stand_ins"]


def test_gumbel_reconstruction_equals_taming_without_its_eval_noise(tmp_path, monkeypatch):
    config = oracles.taming_config(oracles.ddconfig(ch=32, ch_mult=(1, 2), z=16), 20, 16, gumbel=True)
    taming_model = oracles.build_taming(config)
    ckpt = released_layout(tmp_path, config, taming_model.state_dict(), "gumbel")
    released = load_released("taming", ckpt)

    import taming.modules.vqvae.quantize as tq

    def hard_argmax(logits, tau=1.0, hard=True, dim=-1):  # Gumbel-softmax with the noise taken out
        return F.one_hot(logits.argmax(dim), logits.shape[dim]).movedim(-1, dim).to(logits.dtype)

    monkeypatch.setattr(tq, "F", types.SimpleNamespace(gumbel_softmax=hard_argmax, softmax=F.softmax))
    x = oracles.images(2, 16)
    with torch.no_grad():
        ours, q = released.model(x)
        theirs, _ = taming_model(x)
    assert torch.allclose(ours, theirs, atol=ATOL), (ours - theirs).abs().max()
    assert torch.allclose(released.model.decode_indices(q.indices), ours, atol=ATOL)
    d = released.description
    assert d["method"] == "gumbel" and d["method_options"]["kl_weight"] == 1e-8
    assert d["method_options"]["temp_min"] == 1e-6 and "argmax" in d["notes"][0]


def _broken(tmp_path, vq_model, change):
    config, taming_model = vq_model
    sd = dict(taming_model.state_dict())
    change(sd)
    return released_layout(tmp_path, config, sd)


def test_missing_key_is_named(tmp_path, vq_model):
    # attention runs at 8 px, level 1: its k is one third of vqbench's fused qkv
    ckpt = _broken(tmp_path, vq_model, lambda sd: sd.pop("encoder.down.1.attn.0.k.weight"))
    with pytest.raises(UserError, match=r"^checkpoint .*last\.ckpt: missing key 'encoder.down.1.attn.0.k.weight' "
                                        r"\(the configuration needs it for encoder.stages.1.attns.0.qkv.weight\)$"):
        load_released("taming", ckpt)


def test_misshapen_key_is_named_with_both_shapes(tmp_path, vq_model):
    ckpt = _broken(tmp_path, vq_model, lambda sd: sd.__setitem__("quantize.embedding.weight", torch.zeros(24, 15)))
    with pytest.raises(UserError, match=r"key 'quantize.embedding.weight' has shape \(24, 15\), the configuration "
                                        r"needs \(24, 16\) \(shapes from config .*model.yaml\)"):
        load_released("taming", ckpt)


def test_unknown_key_is_named(tmp_path, vq_model):
    ckpt = _broken(tmp_path, vq_model, lambda sd: sd.__setitem__("model_ema.decay", torch.tensor(0.99)))
    with pytest.raises(UserError, match=r"could not place key 'model_ema.decay'"):
        load_released("taming", ckpt)


def test_config_that_does_not_belong_is_refused(tmp_path, vq_model):
    config, taming_model = vq_model
    ckpt = released_layout(tmp_path, config, taming_model.state_dict())
    other = oracles.taming_config(oracles.ddconfig(ch=64, ch_mult=(1, 2), attn=(8,), blocks=2), 24, 16)
    oracles.write_yaml(tmp_path / "other.yaml", other)
    with pytest.raises(UserError, match=r"key 'encoder.conv_in.weight' has shape \(32, 3, 3, 3\), the configuration needs \(64, 3, 3, 3\)"):
        load_released("taming", ckpt, tmp_path / "other.yaml")
    kl = oracles.taming_config(dict(oracles.ddconfig(), double_z=True), 24, 16)
    oracles.write_yaml(tmp_path / "kl.yaml", kl)
    with pytest.raises(UserError, match="ddconfig.double_z=True is not supported"):
        load_released("taming", ckpt, tmp_path / "kl.yaml")


def test_missing_config_says_how_to_give_it(tmp_path, vq_model):
    _, taming_model = vq_model
    ckpt = oracles.save_lightning(tmp_path / "alone" / "last.ckpt", taming_model.state_dict())
    with pytest.raises(UserError, match="needs its YAML config .* --config PATH"):
        load_released("taming", ckpt)


def test_re_saved_weights_load_the_same(tmp_path, vq_model):
    """The way out the refusal offers: the state dict alone, as torch.save or safetensors."""
    from safetensors.torch import save_file

    config, taming_model = vq_model
    oracles.write_yaml(tmp_path / "model.yaml", config)
    sd = {k: v.contiguous() for k, v in taming_model.state_dict().items()}
    torch.save(sd, tmp_path / "weights.pt")
    save_file(sd, str(tmp_path / "weights.safetensors"))
    x = oracles.images(1, 16)
    outs = []
    for name in ("weights.pt", "weights.safetensors"):
        released = load_released("taming", tmp_path / name, tmp_path / "model.yaml")
        assert released.description["weights_key"] is None
        with torch.no_grad():
            outs.append(released.model(x)[0])
    assert torch.equal(outs[0], outs[1])
