"""--fid-reference: its values parsed and checked before any work, the statistics files of pytorch-fid
and ADM read (and bad ones refused with one line, exit 2, no run folder), the choice in the run id only
when it is not val, and rFID, KID and rFID-infinity against a fixed reference computed as their
formulas say (on small stand-in features: the Inception network is tested in test_fid.py, and end to
end against pytorch-fid in the slow test at the bottom)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.core.errors import UserError
from bench.core.hashing import file_digest
from bench.evaluation.metrics import fid, fid_infinity, fid_reference, keys
from bench.evaluation.metrics import fid_reference_choice as choice
from bench.evaluation.metrics.registry import Batch, EvalContext

D = choice.FEATURE_DIM


def _stats_file(path, d=D, **extra):
    rng = np.random.default_rng(0)
    np.savez(path, mu=rng.normal(size=d), sigma=np.eye(d), **extra)
    return path


def test_values_and_labels(tmp_path):
    assert choice.parse(None).label == "val" and choice.parse("val").run_id_value is None
    assert choice.parse("train").label == f"train:{choice.DEFAULT_TRAIN_IMAGES}"
    assert choice.parse("train:500").n_images == 500 and choice.parse("train:500").run_id_value == "train:500"
    pf = _stats_file(tmp_path / "pf.npz")
    got = choice.parse(f"stats:{pf}")
    assert got.label == f"stats:pf.npz@{file_digest(pf)[:10]}" and got.fixed
    assert choice.read_stats(pf)[2] == choice.PYTORCH_FID
    # ADM's reference batch (guided-diffusion evaluations/evaluator.py): images plus pool3 and spatial stats
    adm = _stats_file(tmp_path / "VIRTUAL_imagenet256_labeled.npz", arr_0=np.zeros((2, 8, 8, 3), np.uint8),
                      mu_s=np.zeros(4), sigma_s=np.eye(4))
    mu, sigma, layout = choice.read_stats(adm)
    assert layout == choice.ADM and mu.shape == (D,) and sigma.shape == (D, D)


@pytest.mark.parametrize("make,text,message", [
    (None, "bogus", "not a reference; give --fid-reference val, train, train:N or stats:PATH"),
    (None, "train:1", "N must be an integer >= 2"),
    (None, "train:many", "N must be an integer >= 2"),
    (None, "stats:{tmp}/absent.npz", "no such file"),
    (lambda p: p.write_text("not an npz"), "stats:{tmp}/x.npz", "not a readable .npz"),
    (lambda p: np.savez(p, arr_0=np.zeros((2, 4, 4, 3), np.uint8)), "stats:{tmp}/x.npz",
     "not mu and sigma: neither pytorch-fid's layout"),
    (lambda p: np.savez(p, mu=np.zeros(64), sigma=np.eye(64)), "stats:{tmp}/x.npz",
     "expected (2048,) and (2048, 2048)"),
    (lambda p: np.savez(p, mu=np.zeros(D), sigma=np.eye(D)[:-1]), "stats:{tmp}/x.npz",
     "expected (2048,) and (2048, 2048)"),
])
def test_bad_values_are_one_line_exit_2_and_no_run_folder(tmp_path, capsys, make, text, message):
    from bench.cli.main import main

    if make is not None:
        make(tmp_path / "x.npz")
    value = text.format(tmp=tmp_path)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        choice.parse(value)
    out = tmp_path / "out"
    code = main(["--methods", "vqgan", "--fid-reference", value, "--no-ray", "--preset", "smoke", "--out", str(out),
                 "--no-progress"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_metrics_cli_refuses_a_bad_file_and_train(tmp_path, capsys):
    from bench.cli.metrics import main

    (tmp_path / "a").mkdir()
    for value, message in ((f"stats:{tmp_path}/absent.npz", "no such file"), ("train:10", "no training split")):
        assert main([str(tmp_path / "a"), str(tmp_path / "a"), "--fid-reference", value]) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and message in err[0], err


def test_the_reference_is_in_the_run_id_only_when_not_val(tmp_path):
    from bench.runs.config import RunConfig, resolve

    base = resolve(RunConfig("vqgan", preset="smoke"))
    val = resolve(RunConfig("vqgan", preset="smoke", fid_reference="val"))
    train = resolve(RunConfig("vqgan", preset="smoke", fid_reference="train:500"))
    stats = resolve(RunConfig("vqgan", preset="smoke", fid_reference=f"stats:{_stats_file(tmp_path / 's.npz')}"))
    assert val.run_id == base.run_id and "fid_reference" not in val.to_dict()  # ids from before stay valid
    assert train.to_dict()["fid_reference"] == "train:500" and stats.to_dict()["fid_reference"].startswith("stats:s.npz@")
    assert len({base.run_id, train.run_id, stats.run_id}) == 3


class _Extractor:
    """Stands in for the Inception network: small features, so the distances take milliseconds."""

    device = torch.device("cpu")
    key = "stand-in"

    def describe(self):
        return {"feature_extractor": "stand-in"}


def _features(images, extractor):
    x = images.double().flatten(1)
    return torch.cat([x[:, :6] / 40.0, (x[:, 6:12] / 90.0) ** 2], dim=1).float().numpy()


@pytest.fixture()
def stand_in(monkeypatch):
    monkeypatch.setattr(fid, "get_extractor", lambda device="cpu": _Extractor())
    monkeypatch.setattr(fid, "batch_features", _features)


def _images(n, seed):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 3, 4, 4), dtype=np.uint8))


def _evaluate(originals, recons, fixed):
    from bench.evaluation.metrics.fid_stream import FidAccumulator

    ctx = EvalContext(torch.device("cpu"), 8, len(originals), (4, 4), None, False, fixed_reference=fixed)
    acc = FidAccumulator(ctx)
    for i in range(0, len(originals), 8):
        acc.update(Batch(originals[i:i + 8], recons[i:i + 8]))
    return (*acc.finish(), acc)


def test_a_statistics_file_is_the_reference_kid_unavailable_fid_inf_subsamples_the_reconstructions(stand_in):
    originals, recons = _images(20, 1), _images(20, 2)
    ref_feats = _features(_images(40, 3), None).astype(np.float64)
    mu, sigma = fid.statistics(ref_feats)
    fixed = fid_reference.Reference(mu, sigma, None, False, None, {"label": "stats:ref.npz@0123456789"})
    metrics, entries, acc = _evaluate(originals, recons, fixed)
    feats = _features(recons, None).astype(np.float64)
    assert metrics[keys.FID] == pytest.approx(fid.frechet_distance(mu, sigma, *fid.statistics(feats)), rel=1e-9)
    assert metrics[keys.FID_INF] == pytest.approx(fid_infinity.against_reference(feats, mu, sigma).value, rel=1e-9)
    assert metrics[keys.KID] is None and "only mu and sigma" in entries["fid"]["kid"]["skipped"]
    assert entries["fid"]["reference"] == "stats:ref.npz@0123456789"
    assert "reconstructions only" in entries["fid"]["fid_inf"]["subsampled"]
    assert set(acc.arrays()) == {"fid.features"}  # nothing paired to resample the reference with
    # against the originals (val) the same images give another number: the reference matters
    val_metrics, val_entries, _ = _evaluate(originals, recons, None)
    assert val_entries["fid"]["reference"] == "val" and val_metrics[keys.FID] != metrics[keys.FID]


def test_a_training_sample_is_drawn_by_seed_cached_and_gives_kid(stand_in, tmp_path, monkeypatch):
    import datasets
    from bench.runs.runner import fixed_fid_reference

    monkeypatch.setenv("VQBENCH_CACHE", str(tmp_path / "cache"))
    train = datasets.create("photos", "train", 8)
    pick = choice.parse("train:6")
    ref = fixed_fid_reference(pick, "photos", 8, None, {}, torch.device("cpu"))
    again = fixed_fid_reference(pick, "photos", 8, None, {}, torch.device("cpu"))
    assert ref.info["label"] == "train:6" and ref.info["of"] == len(train) and not ref.cached and again.cached
    images, chosen = fid_reference.sample_images(train, 6, choice.TRAIN_SEED)
    np.testing.assert_array_equal(again.features, _features(images, None))
    assert chosen != list(range(6)) and ref.path.parent == tmp_path / "cache" / "fid" / "reference"
    originals, recons = _images(10, 1), _images(10, 2)
    metrics, entries, _ = _evaluate(originals, recons, again)
    feats = _features(recons, None)
    assert metrics[keys.KID] == pytest.approx(fid.kid(again.features, feats)[0], rel=1e-9)
    assert entries["fid"]["reference"] == "train:6" and entries["fid"]["reference_n_images"] == 6


PT_INCEPTION = "pt_inception-2015-12-05-6726825d.pth"  # the file pytorch-fid's FID_WEIGHTS_URL names
PYTORCH_FID_REL = 1e-3  # measured 2.4e-4 (571.789 vs 571.926): pytorch-fid scales (u-127.5)/127.5, torch-fidelity (u-128)/128


@pytest.mark.slow
def test_rfid_against_pytorch_fid_statistics_equals_pytorch_fid(tmp_path, monkeypatch, capsys):
    """pytorch-fid writes the .npz of an image folder itself (save_fid_stats: np.savez_compressed of mu
    and sigma); `python -m bench.metrics ORIG RECON --fid-reference stats:THAT.npz` gives the rFID that
    pytorch-fid's calculate_fid_given_paths gives for RECON against that file. Offline, pytorch-fid
    reads its weights from the torch hub cache: the same 2015-12-05 network as vqbench's, whose derived
    state dict loads into pytorch-fid's InceptionV3 key for key. 299 px images, so neither side
    resizes. About 2 minutes on 2 CPU cores (pytorch-fid's scipy sqrtm of 2048 x 2048 dominates)."""
    import json
    import shutil

    from pytorch_fid.fid_score import calculate_fid_given_paths, save_fid_stats
    from threadpoolctl import threadpool_limits

    import datasets
    from bench.cli.metrics import main
    from bench.evaluation.metrics import fid_weights

    from .metric_images import blur, write_folder

    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    shutil.copyfile(fid_weights.resolve_weights().path, hub / PT_INCEPTION)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    images = datasets.create("photos", "train", 299).images[::2][:16]  # its val split has one 299 px tile
    write_folder(images[:8], tmp_path / "ref")
    write_folder(images[8:], tmp_path / "orig")
    write_folder(blur(images[8:], 1.5), tmp_path / "recon")
    stats = tmp_path / "ref_stats.npz"
    with threadpool_limits(limits=1, user_api="blas"):
        save_fid_stats([str(tmp_path / "ref"), str(stats)], 8, "cpu", 2048, num_workers=0)
        theirs = calculate_fid_given_paths([str(tmp_path / "recon"), str(stats)], 8, "cpu", 2048, num_workers=0)
    capsys.readouterr()
    assert main([str(tmp_path / "orig"), str(tmp_path / "recon"), "--fid-reference", f"stats:{stats}"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["protocol"]["fid"]["reference"].startswith("stats:ref_stats.npz@")
    assert out["protocol"]["fid"]["reference_detail"]["layout"] == choice.PYTORCH_FID
    print(f"rFID vs pytorch-fid statistics: vqbench {out['metrics']['fid']:.6f}, pytorch-fid {theirs:.6f}")
    assert out["metrics"]["fid"] == pytest.approx(theirs, rel=PYTORCH_FID_REL)
    assert out["metrics"]["kid"] is None


def test_a_run_records_its_reference_and_a_second_reference_is_a_second_run(stand_in, tmp_path, monkeypatch):
    """run_one with --fid-reference train:N: the runner draws the sample, the record names it, and the
    same run asked against val is another run id (never the first record, skipped as if comparable).
    The smoke preset with its perceptual metrics on, the stand-in Inception: seconds."""
    import dataclasses

    from bench.runs import presets
    from bench.runs.config import RunConfig
    from bench.runs.runner import run_one

    monkeypatch.setenv("VQBENCH_CACHE", str(tmp_path / "cache"))
    smoke = presets.PRESETS["smoke"]
    monkeypatch.setitem(presets.PRESETS, "smoke", dataclasses.replace(
        smoke, train=dataclasses.replace(smoke.train, perceptual_metrics=True, steps=2)))
    out = tmp_path / "out"
    train = run_one(RunConfig("vqgan", codebook_size=8, preset="smoke", fid_reference="train:12", device="cpu",
                              tensorboard=False), out, progress=False)
    assert train["status"] == "finished", train.get("traceback")
    assert train["protocol"]["fid"]["reference"] == "train:12" and train["config"]["fid_reference"] == "train:12"
    assert train["metrics"][keys.FID] is not None and train["metrics"][keys.KID] is not None
    val = run_one(RunConfig("vqgan", codebook_size=8, preset="smoke", device="cpu", tensorboard=False), out,
                  progress=False)
    assert val["run_id"] != train["run_id"] and not val.get("skipped")
    assert val["protocol"]["fid"]["reference"] == "val" and "fid_reference" not in val["config"]
