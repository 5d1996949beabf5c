"""gFID and KID intervals: a bootstrap over the generated samples with the reference fixed, from the
Inception features stored with the sample batches. The resampled formulas equal the evaluator's; on
features of known distributions the interval holds the point value, has the width theory gives and
shrinks with more samples; the table reads them from the stored features (or the run's bootstrap
file), and says why when it cannot."""
from __future__ import annotations

import json

import numpy as np
import pytest

from bench.core import run_folder
from bench.core.atomic import write_json_atomic
from bench.evaluation.metrics import fid
from bench.generation import bootstrap, folder
from bench.generation.record import PriorRecord
from bench.reporting import feature_bootstrap, generation_table, intervals

D = 16  # feature width: any works; 2048 would spend the test in eigendecompositions
SHIFT = 3.0  # ||mean of the generated features - mean of the reference||


def test_resampled_gfid_and_kid_equal_the_evaluators_formulas():
    rng = np.random.default_rng(0)
    ref, gen = rng.normal(size=(300, D)), rng.normal(0.3, 1.2, size=(300, D))
    mu, sigma = fid.statistics(ref)
    res = feature_bootstrap.GeneratedResampler(gen, mu, sigma, ref)
    kernel = lambda a, b: (a @ b.T / D + 1) ** 3  # noqa: E731
    k_rr = kernel(ref, ref)
    for _ in range(3):
        idx = rng.integers(0, 300, 300)
        assert res.fid(idx) == pytest.approx(fid.frechet_distance(mu, sigma, *fid.statistics(gen[idx])), rel=1e-6)
        distinct = idx[:, None] != idx[None, :]  # a resample repeats samples: their pairs are left out
        brute = ((k_rr.sum() - np.trace(k_rr)) / (300 * 299) + kernel(gen[idx], gen[idx])[distinct].mean()
                 - 2 * kernel(ref, gen[idx]).mean())
        assert res.kid(idx) == pytest.approx(brute, rel=1e-9)
    # without repeats and with equal set sizes, the evaluator's KID (every subset is the whole set)
    assert res.kid(np.arange(300)) == pytest.approx(fid.kid(ref, gen, subsets=2)[0], rel=1e-9)
    assert feature_bootstrap.generated_replicates(gen[:2], mu, sigma, ref, np.zeros((1, 2), int)) is None


def _reference(cache, n=1000, seed=1):
    feats = np.random.default_rng(seed).normal(size=(n, D)).astype(np.float32)
    mu, sigma = fid.statistics(feats)
    name = f"photos__train__32px__n{n}__fake.npz"
    path = cache / "fid" / "reference" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, mu=mu, sigma=sigma, features=feats, meta=json.dumps({"n_images": n}))
    return name, mu, sigma, feats


def _generated(n, seed):
    shift = np.full(D, SHIFT / np.sqrt(D))
    return (np.random.default_rng(seed).normal(size=(n, D)) + shift).astype(np.float32)


def _write_prior(out, method, feats, ref, seed=0, batch=50, precision=0.5):
    """A tokenizer record and a finished prior whose sample batches hold `feats`."""
    name, mu, sigma, ref_feats = ref
    run_id = f"{method}-photos-K256-s{seed}-x"
    write_json_atomic(run_folder.run_dir(out, run_id) / run_folder.RECORD, {
        "run_id": run_id, "status": "finished", "config": {"method": method, "dataset": "photos", "codebook_size": 256,
                                                           "seed": seed, "preset": "cpu-tiny"},
        "metrics": {"fid": 200.0 + seed}, "protocol": {"fid": {"n_images": 252}}})
    tokenizer = {"run_id": run_id, "method": method, "dataset": "photos", "codebook_size": 256, "seed": seed,
                 "preset": "cpu-tiny"}
    rec = PriorRecord(f"{run_id}--cpu-tiny-s0-abc", "finished", tokenizer, {"preset": "cpu-tiny", "seed": 0})
    rec.layout = {"sequence_length": 64}
    gkid, gkid_std, _ = fid.kid(ref_feats, feats)
    rec.metrics.update(gfid=fid.frechet_distance(mu, sigma, *fid.statistics(feats)), gkid=gkid, gkid_std=gkid_std,
                       precision=precision, recall=0.25, val_nll=3.0)
    rec.protocol = {"fid": {"generated": len(feats), "reference": {"file": name, "n_images": len(ref_feats)}},
                    "inception_score": {"available": False, "why": "no logits"}}
    rec.write(out)
    pdir = folder.prior_dir(out, rec.prior_id)
    (pdir / folder.SAMPLES).mkdir(parents=True)
    for b in range(0, len(feats), batch):
        np.savez(pdir / folder.SAMPLES / folder.sample_batch_name(b // batch), tokens=np.zeros((1, 64), np.int32),
                 features=feats[b : b + batch])
    return rec.to_json(), pdir


@pytest.fixture
def ref(tmp_path, monkeypatch):
    monkeypatch.setenv("VQBENCH_CACHE", str(tmp_path / "cache"))
    return _reference(tmp_path / "cache")


def _frame(out):
    return generation_table.generation_frame(generation_table.read(out)).set_index("Method")


def test_interval_holds_the_value_has_the_expected_width_and_shrinks_with_samples(tmp_path, ref):
    out = tmp_path / "out"
    _write_prior(out, "few", _generated(100, 2), ref)
    _write_prior(out, "many", _generated(400, 3), ref)
    assert not list(out.glob("priors/*/bootstrap.npz"))  # nothing precomputed: from the stored features
    df = _frame(out)
    for m in ("few", "many"):
        assert df.loc[m, "gfid_lo"] < df.loc[m, "gfid"] < df.loc[m, "gfid_hi"]
        assert df.loc[m, "gkid_lo"] < df.loc[m, "gkid"] < df.loc[m, "gkid_hi"]
        assert df.loc[m, "Interval"] == "samples, 1 seed"  # the fake tokenizers store no features: no rFID ±
    width = {m: df.loc[m, "gfid_hi"] - df.loc[m, "gfid_lo"] for m in ("few", "many")}
    assert width["many"] < 0.7 * width["few"]  # 1/sqrt(n): 0.5 expected
    # FID is dominated by ||mean shift||^2, whose standard error is 2 ||shift|| / sqrt(n)
    assert width["many"] / 2 == pytest.approx(1.96 * 2 * SHIFT / np.sqrt(400), rel=0.25)
    text = generation_table.render(generation_table.read(out), "md")
    kid_half = (df.loc["many", "gkid_hi"] - df.loc["many", "gkid_lo"]) / 2
    assert f"{df.loc['many', 'gkid']:.4f} ± {kid_half:.4f}" in text  # KID's ± is the interval, not the subsets' std
    assert "gFID and KID over the generated samples" in text and "point values" in text


def test_interval_follows_the_stored_features_and_the_bootstrap_file(tmp_path, ref, monkeypatch):
    out = tmp_path / "out"
    rec, pdir = _write_prior(out, "alpha", _generated(200, 4), ref)
    before = _frame(out).loc["alpha", ["gfid_lo", "gfid_hi"]].tolist()
    # the run's bootstrap file (what run.py writes) gives the same interval, also without the reference entry
    feats, _ = bootstrap.sample_features(pdir, 200)
    _, mu, sigma, ref_feats = ref
    reps, _ = bootstrap.compute(feats, mu, sigma, ref_feats)
    bootstrap.save(pdir, reps, bootstrap.digest(feats, ref[0]))
    monkeypatch.setenv("VQBENCH_CACHE", str(tmp_path / "elsewhere"))
    assert _frame(out).loc["alpha", ["gfid_lo", "gfid_hi"]].tolist() == pytest.approx(before)
    # other features in the batch files: the file no longer matches, and without the reference nothing is computed
    z = dict(np.load(pdir / folder.SAMPLES / folder.sample_batch_name(0)))
    z["features"] = z["features"] * 1.5
    np.savez(pdir / folder.SAMPLES / folder.sample_batch_name(0), **z)
    df = _frame(out)
    assert np.isnan(df.loc["alpha", "gfid_lo"])
    assert "gFID and KID without ± (alpha): FID reference" in generation_table.render(generation_table.read(out), "md")
    monkeypatch.setenv("VQBENCH_CACHE", str(tmp_path / "cache"))
    assert _frame(out).loc["alpha", ["gfid_lo", "gfid_hi"]].tolist() != pytest.approx(before)


def test_two_seeds_pool_their_replicates_three_give_t_intervals(tmp_path, ref):
    out = tmp_path / "out"
    recs = [_write_prior(out, "alpha", _generated(100, 10 + s), ref, seed=s, precision=0.4 + 0.1 * s)[0]
            for s in range(3)]
    rows = generation_table.read(out)
    two = generation_table.generation_frame(rows[rows["Seed"] < 2]).iloc[0]
    reps = [bootstrap.load(folder.prior_dir(out, r["prior_id"]), r)[0] for r in recs[:2]]
    iv = intervals.bootstrap_interval(two["gfid"], (reps[0].gfid + reps[1].gfid) / 2, 100)
    assert (two["gfid_lo"], two["gfid_hi"]) == pytest.approx((iv.low, iv.high))
    assert two["Interval"] == "samples, 2 seeds" and np.isnan(two["precision_lo"])  # precision: a point value
    three = generation_table.generation_frame(rows).iloc[0]
    t = intervals.t_interval([r["metrics"]["gfid"] for r in recs])
    assert (three["gfid_lo"], three["gfid_hi"]) == pytest.approx((t.low, t.high))
    assert three["precision_lo"] == pytest.approx(intervals.t_interval([0.4, 0.5, 0.6]).low)
    assert three["rfid_lo"] == pytest.approx(intervals.t_interval([200.0, 201.0, 202.0]).low)
    assert three["Interval"] == "t, 3 seeds"
