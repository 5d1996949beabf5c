"""The FID-infinity columns: rFID∞ beside rFID in the reconstruction tables (its ± the image bootstrap of
the estimator over the stored features, its dagger by the smallest subsample), gFID∞ and rFID∞ in the
generation tables, and the dagger's note saying which number compares across image counts."""
from __future__ import annotations

import re

import numpy as np
import pytest

from bench.evaluation.metrics import fid, fid_infinity
from bench.reporting import fid_infinity_interval, generation_table, intervals, tables
from bench.reporting.summary import build
from tests.bench.generation.test_generation_table import _prior, _tokenizer
from tests.bench.reporting.fake_runs import write_reference, write_run
from tests.bench.reporting.test_tables import _md_tables


def test_rfid_infinity_column_with_its_interval_and_dagger(tmp_path, monkeypatch):
    monkeypatch.setenv("VQBENCH_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(6)
    n, d = 60, 64
    orig = rng.normal(size=(n, d)).astype(np.float32)
    name = write_reference(tmp_path / "cache", orig)
    expected = {}
    for method, noise in (("alpha", 0.2), ("beta", 0.6)):
        recon = (orig + noise * rng.normal(size=orig.shape)).astype(np.float16).astype(np.float32)
        value = fid.frechet_distance(*fid.statistics(orig), *fid.statistics(recon))
        inf = fid_infinity.paired(recon, orig).value
        expected[method] = (inf, fid_infinity_interval.paired_replicates(recon, orig))
        write_run(tmp_path / "out", method, 0, {"psnr": rng.normal(20, 1, n)},
                  metrics={"fid": value, "fid_inf": inf}, features=recon, reference=name)
    summary = build(tmp_path / "out")  # the default columns: rFID∞ shown because the records have it
    df = summary.per_dataset.set_index("Method")
    for m, (inf, reps) in expected.items():
        iv = intervals.bootstrap_interval(inf, reps, n)
        assert df.loc[m, "fid_inf"] == pytest.approx(inf)
        assert df.loc[m, "fid_inf_lo"] == pytest.approx(iv.low) and df.loc[m, "fid_inf_hi"] == pytest.approx(iv.high)
        assert len(reps) == fid_infinity_interval.RESAMPLES
    md_text = tables.render(summary, "md")
    md = _md_tables(md_text)["photos"].set_index("Method")
    cols = list(md.columns)
    assert cols[cols.index("rFID (vs val) ↓") + 1] == "rFID∞ (vs val) ↓"
    assert re.fullmatch(r"\*\*[0-9.]+ ± [0-9.]+†\*\*", md.loc["alpha", "rFID∞ (vs val) ↓"])  # 60 images: daggered
    assert "is the number comparable across image counts" in md_text
    assert "the first 50 of the same resamples" in md_text
    assert r"rFID$_\infty$" in tables.render(summary, "tex")


def test_records_without_rfid_infinity_keep_their_columns(tmp_path):
    write_run(tmp_path, "alpha", 0, {"psnr": np.full(10, 20.0)}, metrics={"fid": 5.0})
    md = tables.render(build(tmp_path), "md")
    assert "rFID∞" not in md and "FID∞" not in md


def test_fid_infinity_dagger_follows_the_smallest_subsample():
    from bench.reporting.table_model import fid_inf_dagger

    assert fid_infinity.images_for_smallest(2048) == 20471
    assert fid_inf_dagger(252) and fid_inf_dagger(20470)
    assert not fid_inf_dagger(20471) and not fid_inf_dagger(50000) and not fid_inf_dagger(None)


def test_generation_table_shows_rfid_and_gfid_infinity(tmp_path):
    _tokenizer(tmp_path, "tok-a", 0, rfid=12.5)
    _prior(tmp_path, "tok-a", 0, gfid=40.0)
    import json

    from bench.core import run_folder
    path = run_folder.run_dir(tmp_path, "tok-a") / run_folder.RECORD
    rec = json.loads(path.read_text())
    rec["metrics"]["fid_inf"] = 11.0
    path.write_text(json.dumps(rec))
    prior = next((tmp_path / "priors").glob("*/record.json"))
    prec = json.loads(prior.read_text())
    prec["metrics"]["gfid_inf"] = 37.0
    prior.write_text(json.dumps(prec))
    text = generation_table.render(generation_table.read(tmp_path), "md")
    header = next(line for line in text.splitlines() if line.startswith("| Method"))
    assert "rFID∞ (vs val) ↓" in header and "gFID∞ (vs train) ↓" in header
    row = next(line for line in text.splitlines() if line.startswith("| vqgan"))
    assert "11.00†" in row and "37.00†" in row
    assert "is the number comparable across image counts" in text
