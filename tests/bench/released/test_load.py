"""load_released: the kinds, the KIND:PATH spec, the description for the record, and the model in
the evaluator's hands (the same call a trained run's model goes through)."""
from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import pytest
import torch

import taming.modules.diffusionmodules.model  # noqa: E402,F401 - a test requirement (requirements/test.txt): fail, never skip, when absent

from bench.core.errors import UserError  # noqa: E402
from bench.evaluation.evaluator import evaluate  # noqa: E402
from bench.released import describe, kinds, load_released, parse_spec  # noqa: E402
from bench.released.vqct_prior import PRIOR_FILE  # noqa: E402
from datasets.tensor_dataset import UInt8Images  # noqa: E402
from tests.bench.released import oracles  # noqa: E402


def test_kinds_and_specs():
    assert kinds() == ["llamagen", "taming", "vqbench", "vqct"]
    assert all(describe()[k] for k in kinds())
    assert parse_spec("taming:/models/last.ckpt") == ("taming", Path("/models/last.ckpt"))
    with pytest.raises(UserError, match=r"unknown released checkpoint kind 'tamng' \(did you mean 'taming'\?\)"):
        parse_spec("tamng:x.ckpt")
    with pytest.raises(UserError, match="KIND:PATH"):
        parse_spec("last.ckpt")
    with pytest.raises(UserError, match="checkpoint .*absent.ckpt does not exist"):
        load_released("taming", "absent.ckpt")


@pytest.fixture(scope="module")
def taming_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("taming")
    config = oracles.taming_config(oracles.ddconfig(), 32, 16)
    ckpt = oracles.save_lightning(root / "ckpts" / "last.ckpt", oracles.build_taming(config).state_dict())
    oracles.write_yaml(root / "configs" / "model.yaml", config)
    return ckpt


def test_description_is_json_and_names_the_bytes(taming_files):
    d = load_released("taming", taming_files).description
    assert json.loads(json.dumps(d)) == d
    assert d["sha256"] == hashlib.sha256(taming_files.read_bytes()).hexdigest()
    assert d["files"]["config"]["sha256"] == hashlib.sha256((taming_files.parent.parent / "configs" / "model.yaml")
                                                           .read_bytes()).hexdigest()
    assert d["path"] == str(taming_files.resolve())


def vqct_files(tmp_path):
    prior = oracles.vqct_prior()
    with (tmp_path / PRIOR_FILE).open("wb") as f:
        pickle.dump(prior, f)
    vectors, edges, n_adj = oracles.official_vqct_inputs(prior)
    dd = oracles.ddconfig()
    model = oracles.OfficialVQCT(dd, 8, oracles.OfficialVQCTQuantizer(vectors, edges, n_adj, 8, 2))
    oracles.write_yaml(tmp_path / "model.yaml", {"model": {"params": {"embed_dim": 8, "topk": 2, "ddconfig": dd}}})
    return oracles.save_lightning(tmp_path / "last.ckpt", model.state_dict())


@pytest.mark.parametrize("kind", ["taming", "vqct"])
def test_the_evaluator_takes_the_released_model(tmp_path, taming_files, kind):
    if kind == "vqct":
        import torch_geometric.nn  # noqa: F401 - a test requirement
    ckpt = taming_files if kind == "taming" else vqct_files(tmp_path)
    released = load_released(kind, ckpt)
    g = torch.Generator().manual_seed(0)
    val = UInt8Images(torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8, generator=g),
                      [f"{i}.png" for i in range(6)], {"dataset": "noise", "split": "val", "resolution": 16})
    metrics, protocol = evaluate(released.model, val, tmp_path, torch.device("cpu"), batch_size=4, perceptual=False)
    assert protocol["n_images"] == 6 and 0 < metrics["psnr"] < 100
    assert 0 < metrics["utilization"] <= 1
    if kind == "vqct":  # usage per part of speech, over global indices
        assert metrics["utilization_adj"] is not None and metrics["utilization_noun"] is not None
