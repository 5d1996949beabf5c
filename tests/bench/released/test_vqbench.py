"""vqbench's own run folders as released checkpoints: the same model back, from safetensors only."""
from __future__ import annotations

import json

import pytest
import torch

from bench.core import run_folder
from bench.core.errors import UserError
from bench.models.discriminator import PatchDiscriminator
from bench.released import load_released
from bench.runs.config import RunConfig, resolve
from bench.training.checkpoint import save_checkpoint
from bench.training.step import build_model
from tests.bench.released import oracles


def run_folder_of(tmp_path, method: str, **options):
    """A run folder as a trained run leaves it: record.json and checkpoint.safetensors (model,
    discriminator, optimizers, RNG)."""
    run = resolve(RunConfig(method=method, preset="smoke", codebook_size=16, method_options=options))
    torch.manual_seed(0)
    model, disc = build_model(run).eval(), PatchDiscriminator(n_layers=1)
    folder = run_folder.run_dir(tmp_path, run.run_id)
    folder.mkdir(parents=True)
    opt = torch.optim.Adam(model.parameters())
    save_checkpoint(folder / run_folder.CHECKPOINT, 20, {"model": model, "disc": disc}, {"opt_g": opt})
    (folder / run_folder.RECORD).write_text(json.dumps({"run_id": run.run_id, "status": "finished",
                                                        "config": run.to_dict()}))
    return folder, model, run


@pytest.mark.parametrize("method,options", [("vqgan", {"l2_normalize": True}), ("fsq", {})])
def test_run_folder_gives_the_same_model(tmp_path, method, options):
    folder, model, run = run_folder_of(tmp_path, method, **options)
    released = load_released("vqbench", folder)
    x = oracles.images(2, run.model.resolution)
    with torch.no_grad():
        ours, q = released.model(x)
        theirs, q_theirs = model(x)
    assert torch.equal(ours, theirs) and torch.equal(q.indices, q_theirs.indices)
    d = released.description
    assert (d["method"], d["codebook_size"], d["details"]["run_id"], d["details"]["steps"]) == (method, 16, run.run_id, 20)
    assert d["files"]["checkpoint"]["path"].endswith(run_folder.CHECKPOINT)
    assert set(d["ignored_keys"]) >= {"disc.", "rng."}  # the optimizer never stepped: no state tensors
    if options:
        assert d["method_options"]["l2_normalize"] is True


def test_checkpoint_path_with_its_record_and_bad_records(tmp_path):
    folder, _, _ = run_folder_of(tmp_path, "vqgan")
    assert load_released("vqbench", folder / run_folder.CHECKPOINT).description["method"] == "vqgan"
    record = json.loads((folder / run_folder.RECORD).read_text())
    record["config"]["codebook_size"] = 32
    (tmp_path / "other.json").write_text(json.dumps(record))
    with pytest.raises(UserError, match=r"key 'model.quantizer.embedding.weight' has shape \(16, 16\), the "
                                        r"configuration needs \(32, 16\)"):
        load_released("vqbench", folder, tmp_path / "other.json")
    (folder / run_folder.RECORD).unlink()
    with pytest.raises(UserError, match="no record"):
        load_released("vqbench", folder)
