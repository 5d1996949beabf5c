"""A prior end to end on a toy dataset of four fixed patterns, one class each (toy.py), over a smoke
tokenizer trained here: it generates those patterns (of the asked class when conditional), far
closer to the data than random tokens; decoding its stored sequences reproduces its images exactly;
an interrupted run resumes to the same samples; a (B, H, W, L) tokenizer round-trips."""
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from bench.core.images import to_uint8
from bench.evaluation.metrics import fid
from bench.generation import folder, run_prior
from bench.generation.config import prior_preset
from bench.generation.layout import TokenLayout
from bench.generation.record import read_prior_record
from bench.generation.run import decode_images
from bench.generation.tokens import load_tokenizer, token_set, view_dataset
from bench.runs.config import RunConfig
from bench.runs.runner import run_one

from .toy import write_toy

# A prior that learns four sequences of 64 tokens in 200 steps (a few seconds on one CPU thread).
CFG = prior_preset("smoke").override({"train.steps": 200, "train.ckpt_every": 50, "train.base_lr": 2.5e-4,
                                      "model.n_embd": 48, "eval.n_samples": 32, "sampling.batch_size": 16,
                                      "eval.inception_metrics": False})  # Inception: test_smoke_inception.py


def _tokenizer(root, out, method="vqgan", steps=20):
    cfg = RunConfig(method=method, dataset=f"imagefolder:{root}", codebook_size=16, preset="smoke", steps=steps,
                    dataset_options={"hflip": False})
    rec = run_one(cfg, out, progress=False)
    assert rec["status"] == "finished", rec.get("error")
    return out / "runs" / rec["run_id"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    base = tmp_path_factory.mktemp("prior")
    root = write_toy(base / "toy")
    out = base / "out"
    tok_dir = _tokenizer(root, out)
    return root, out, tok_dir, run_prior(tok_dir, CFG, out, progress=False)


def _samples(rec, out):
    d = folder.prior_dir(out, rec["prior_id"]) / folder.SAMPLES
    parts = [np.load(p) for p in sorted(d.glob("batch_*.npz"))]
    tokens = torch.from_numpy(np.concatenate([p["tokens"] for p in parts]).astype(np.int64))
    labels = np.concatenate([p["labels"] for p in parts]) if "labels" in parts[0].files else None
    return tokens, labels


def _training_grids(tok_dir):
    with np.load(tok_dir / folder.token_cache_name("train")) as z:
        seqs, labels = z["indices"].reshape(len(z["indices"]), -1).astype(np.int64), z["labels"]
    grids = {int(c): {tuple(s) for s in seqs[labels == c]} for c in np.unique(labels)}
    assert all(len(g) == 1 for g in grids.values()), "each pattern should have one index grid"
    return {c: next(iter(g)) for c, g in grids.items()}


def test_record_links_its_tokenizer_and_carries_config_and_protocol(toy):
    _, out, tok_dir, rec = toy
    assert rec["status"] == "finished", rec.get("traceback")
    assert rec["kind"] == "prior" and rec["tokenizer"]["run_id"] == tok_dir.name
    assert rec["config"]["train"]["steps"] == 200 and rec["overrides"]["train.steps"] == 200
    assert rec["conditional"] is True and rec["num_classes"] == 4
    assert rec["label_names"] == ["checker", "ramp", "red", "stripes"]
    assert rec["layout"]["index_shape"] == [8, 8] and rec["layout"]["vocab_size"] == 16
    assert rec["steps_done"] == 200 and rec["metrics"]["gfid"] is None  # Inception switched off here
    assert "inception_metrics=False" in rec["protocol"]["fid"]["skipped"]
    assert rec["protocol"]["sampling"]["precision"] == "float32"  # bf16 autocast on CUDA only
    assert rec["protocol"]["evaluation_precision"].startswith("float32: autocast off, TF32 off")
    assert rec["metrics"]["val_nll"] < 0.1 * np.log(16)  # held out: the same four grids; uniform is ln 16
    pdir = folder.prior_dir(out, rec["prior_id"])
    assert json.loads((pdir / folder.RECORD).read_text())["prior_id"] == rec["prior_id"]
    assert (pdir / folder.GRID).is_file() and (pdir / folder.CHECKPOINT).is_file()
    again = run_prior(tok_dir, CFG, out, progress=False)
    assert again["skipped"] is True and again["prior_id"] == rec["prior_id"]


def test_conditional_samples_are_the_pattern_of_their_class(toy):
    _, out, tok_dir, rec = toy
    grids = _training_grids(tok_dir)
    tokens, labels = _samples(rec, out)
    assert len(tokens) == 32 and labels.tolist() == [i % 4 for i in range(32)]
    hits = [tuple(t.tolist()) == grids[int(c)] for t, c in zip(tokens, labels)]
    assert np.mean(hits) >= 0.9


def test_samples_are_far_closer_to_the_data_than_random_tokens(toy):
    """A Frechet distance on a cheap feature (4x4 mean colours), generated vs the training grids
    decoded: what a perfect prior would give, so the 20-step tokenizer's own reconstruction error
    (the same for both) does not drown the comparison."""
    _, out, tok_dir, rec = toy
    tok = load_tokenizer(tok_dir, torch.device("cpu"))
    layout = TokenLayout(tuple(rec["layout"]["index_shape"]), 16)
    train = decode_images(tok, layout, token_set(tok, "train").sequences(), 16)
    tokens, _ = _samples(rec, out)
    random_tokens = torch.randint(0, 16, tokens.shape, generator=torch.Generator().manual_seed(0))

    def feats(images):
        return torch.nn.functional.avg_pool2d(images.double(), 4).flatten(1).numpy()

    def distance(images):
        return fid.frechet_distance(*fid.statistics(feats(train)), *fid.statistics(feats(images)))

    generated = distance(decode_images(tok, layout, tokens, 16))
    random = distance(decode_images(tok, layout, random_tokens, 16))
    assert generated < 0.2 * random, (generated, random)


def test_decoding_a_stored_sequence_reproduces_the_priors_own_images(toy):
    _, out, tok_dir, rec = toy
    tokens, _ = _samples(rec, out)
    tok = load_tokenizer(tok_dir, torch.device("cpu"))
    indices = TokenLayout((8, 8), 16).from_sequence(tokens[:16])
    with torch.no_grad():
        images = to_uint8(tok.model.decode(tok.model.quantizer.decode_indices(indices)))
    grid = np.asarray(Image.open(folder.prior_dir(out, rec["prior_id"]) / folder.GRID))
    assert grid.shape == (2 * 16, 8 * 16, 3)
    tiles = [grid[r * 16 : (r + 1) * 16, c * 16 : (c + 1) * 16] for r in range(2) for c in range(8)]
    assert all(np.array_equal(tile, img.permute(1, 2, 0).numpy()) for tile, img in zip(tiles, images))


def test_an_interrupted_prior_resumes_to_the_same_samples(toy, tmp_path):
    _, out, tok_dir, rec = toy
    other = tmp_path / "out"

    def stop(step):
        if step == 100:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_prior(tok_dir, CFG, other, progress=False, on_checkpoint=stop)
    assert read_prior_record(folder.prior_dir(other, rec["prior_id"])) is None  # interrupted: no record
    resumed = run_prior(tok_dir, CFG, other, progress=False)
    assert resumed["resumed_from"] == 100 and resumed["status"] == "finished"
    assert torch.equal(_samples(resumed, other)[0], _samples(rec, out)[0])
    assert resumed["metrics"]["val_nll"] == rec["metrics"]["val_nll"]
    # sampling resumes batch by batch: a lost batch is sampled again to the same tokens
    pdir = folder.prior_dir(other, rec["prior_id"])
    (pdir / folder.SAMPLES / folder.sample_batch_name(1)).unlink()
    (pdir / folder.RECORD).unlink()
    again = run_prior(tok_dir, CFG, other, progress=False)
    assert again["resumed_from"] == 200 and torch.equal(_samples(again, other)[0], _samples(rec, out)[0])


def test_unconditional_prior_generates_the_patterns(toy, tmp_path):
    _, out, tok_dir, _ = toy
    rec = run_prior(tok_dir, CFG.override({"class_conditional": False}), tmp_path, progress=False)
    assert rec["conditional"] is False and rec["num_classes"] == 0
    tokens, labels = _samples(rec, tmp_path)
    grids = set(_training_grids(tok_dir).values())
    assert labels is None and np.mean([tuple(t.tolist()) in grids for t in tokens]) >= 0.9


def test_a_tokenizer_without_a_finished_record_gives_a_skipped_prior(toy, tmp_path):
    _, _, tok_dir, _ = toy
    failed = tmp_path / "runs" / "x"
    shutil.copytree(tok_dir, failed)
    record = json.loads((failed / "record.json").read_text())
    (failed / "record.json").write_text(json.dumps({**record, "status": "failed", "run_id": "x"}))
    rec = run_prior(failed, CFG, tmp_path, progress=False)
    assert rec["status"] == "skipped" and "'failed'" in rec["error"]
    assert read_prior_record(folder.prior_dir(tmp_path, rec["prior_id"]))["status"] == "skipped"


def test_several_indices_per_position_round_trip_and_decode(toy, tmp_path):
    """vqct-top1 emits (B, H, W, 2): its token cache, sampled sequences and decoding keep that shape."""
    root, _, _, _ = toy
    tok_dir = _tokenizer(root, tmp_path, method="vqct-top1", steps=4)
    tok = load_tokenizer(tok_dir, torch.device("cpu"))
    tokens = token_set(tok, "train")
    assert tokens.layout.index_shape == (8, 8, 2) and tokens.indices.shape == (64, 8, 8, 2)
    images = torch.stack([view_dataset(tok, "train")[i] for i in range(4)])
    with torch.no_grad():
        q = tok.model.encode(images.float().div(127.5).sub(1))
        back = tokens.layout.from_sequence(tokens.layout.to_sequence(q.indices))
        assert torch.equal(back, q.indices) and torch.equal(back, tokens.indices[:4])
        assert torch.equal(tok.model.quantizer.decode_indices(back), q.z_q)
    rec = run_prior(tok_dir, CFG.override({"train.steps": 10, "eval.n_samples": 8}), tmp_path, progress=False)
    assert rec["status"] == "finished", rec.get("traceback")
    assert rec["layout"]["index_shape"] == [8, 8, 2] and rec["layout"]["sequence_length"] == 128
    sampled, _ = _samples(rec, tmp_path)
    grid = np.asarray(Image.open(folder.prior_dir(tmp_path, rec["prior_id"]) / folder.GRID))
    with torch.no_grad():
        decoded = to_uint8(tok.model.decode_indices(tokens.layout.from_sequence(sampled)))
    assert np.array_equal(grid[:16, :16], decoded[0].permute(1, 2, 0).numpy())


def test_a_prior_another_driver_holds_is_waited_for_and_its_record_taken(toy, tmp_path, monkeypatch, capsys):
    """Two drivers with --generate on one results folder train each prior once: the second waits on the
    prior folder's lease, then finds the first one's finished record instead of training again."""
    import threading

    from bench.core import run_folder
    from bench.runs import held_lease, lease

    _, out, tok_dir, rec = toy
    assert not (folder.prior_dir(out, rec["prior_id"]) / run_folder.LEASE).exists()  # released after the run
    monkeypatch.setattr(held_lease, "POLL_S", 0.05)
    pdir = folder.prior_dir(tmp_path, rec["prior_id"])
    assert lease.try_claim(pdir, "other")  # a live holder: this very process
    got = []
    waiter = threading.Thread(target=lambda: got.append(run_prior(tok_dir, CFG, tmp_path, progress=False)))
    waiter.start()
    waiter.join(1.0)
    assert waiter.is_alive() and not got  # waiting, not training beside the holder
    shutil.copy(folder.prior_dir(out, rec["prior_id"]) / folder.RECORD, pdir / folder.RECORD)
    lease.release(pdir, "other")
    waiter.join(60)
    assert got and got[0]["skipped"] is True and got[0]["metrics"] == rec["metrics"]
    assert "held by driver other" in capsys.readouterr().err


def test_a_stale_prior_lease_is_taken_over_and_noted_in_the_record(toy, tmp_path, monkeypatch):
    import subprocess
    import sys

    from bench.core import run_folder
    from bench.generation import run as prior_run
    from bench.runs import lease

    _, _, tok_dir, rec = toy
    monkeypatch.setattr(prior_run, "_run", lambda record, *args: None)  # the lease, not the training, is tested
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    pdir = folder.prior_dir(tmp_path, rec["prior_id"])
    assert lease.try_claim(pdir, "crashed")
    held = json.loads((pdir / run_folder.LEASE).read_text())
    (pdir / run_folder.LEASE).write_text(json.dumps({**held, "pid": dead_pid}))
    again = run_prior(tok_dir, CFG, tmp_path, progress=False)
    assert again["status"] == "finished" and again["lease_taken_over"]["pid"] == dead_pid
    assert again["deterministic"] is False and again["gpu_memory_fraction"] is None  # a CPU prior: neither applies
    assert not (pdir / run_folder.LEASE).exists()
