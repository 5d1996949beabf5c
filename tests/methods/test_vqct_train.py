"""VQCT trains on the embedded dataset: the reconstruction loss falls."""
import json

import pytest
import torch

from bench.core.images import to_float
from bench.runs.config import RunConfig, resolve
from bench.training.loop import train
from bench.training.step import build_model
from bench.training.train_log import read_train_log


@torch.no_grad()
def _l1(model, images):
    model.eval()
    x = to_float(images)
    return float((model(x)[0] - x).abs().mean())


# 87 s in the whole suite on 2 cores (one torch thread per test process); VQCT's training path also runs
# in the default suite through tests/bench/runs/test_official_vqct.py's smoke-sized run.
@pytest.mark.slow
def test_vqct_reconstruction_loss_falls(tmp_path):
    import datasets

    # cpu-tiny (the default preset) for 60 steps.
    resolved = resolve(RunConfig(method="vqct", codebook_size=256, steps=60)).with_train(log_every=15)
    res = resolved.model.resolution
    train_set = datasets.create("photos", "train", res)
    val = torch.stack([datasets.create("photos", "val", res)[i] for i in range(64)])
    torch.manual_seed(resolved.seed)  # train() seeds the same way, so this is its initial model
    before = _l1(build_model(resolved), val)
    result = train(resolved, train_set, tmp_path, torch.device("cpu"), progress=False)
    after = _l1(result.model, val)
    assert result.steps == 60 and len(read_train_log(tmp_path)) == 4
    assert after < 0.9 * before, (before, after)  # held-out L1, eval mode (no GCN dropout)
    assert 0 < read_train_log(tmp_path)[-1]["utilization"] <= 1


@pytest.mark.slow
def test_vqct_run_one_record(tmp_path):
    from bench.runs.runner import run_one

    record = run_one(RunConfig(method="vqct", codebook_size=256, steps=100), tmp_path, progress=False)
    assert record["status"] == "finished", record.get("error")
    m = record["metrics"]
    for key in ("psnr", "ssim", "utilization", "utilization_adj", "utilization_noun", "perplexity_noun"):
        assert m[key] is not None, key
    assert record["config"]["method_options"]["top_k"] == 2
    run_dir = tmp_path / "runs" / record["run_id"]
    rec = [entry["rec"] for entry in read_train_log(run_dir)]
    assert sum(rec[-2:]) / 2 < 0.8 * sum(rec[:2]) / 2, rec
    words = json.loads(next(run_dir.glob("*words*.json")).read_text())
    assert len(words["words"]) == 256
