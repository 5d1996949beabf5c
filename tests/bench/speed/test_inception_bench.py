"""`python -m bench.speed.inception --quick` runs and prints every table with the expected rows; the
rows' ratios are consistent and the kept variant's features match. (Speeds are machine facts, in
docs/performance.md, never asserted.) The quick run pushes about 40 images through Inception."""
import os

import pytest
import torch

from bench.speed import inception as bench_inception

B = bench_inception


@pytest.fixture(scope="module")
def tables():
    return B.run(B.QUICK)


@pytest.mark.slow  # the quick benchmark they share takes ~80 s on 2 cores
def test_flops_per_image_are_inception_v3s(tables):
    rows = tables["bound"]
    assert [r["what"].split()[0] for r in rows] == ["Inception-v3", "fp32", B.LARGEST_CONV]
    flops = rows[0]["GFLOP"]
    assert 11.0 < flops < 12.0  # ~5.7 G multiply-adds at 299x299, whatever the machine
    for r in rows[1:]:
        assert r["GFLOP/s"] > 0 and r["images/s bound"] == pytest.approx(r["GFLOP/s"] / flops)


@pytest.mark.slow  # the quick benchmark they share takes ~80 s on 2 cores
def test_variant_rows_compare_against_channels_last(tables):
    by = {r["variant"]: r for r in tables["variants"]}
    assert list(by) == [B.SHIPPED, B.BEFORE, B.FOLDED, B.KEPT]  # quick has no bf16 row
    assert by[B.BEFORE]["speed-up"] == 1.0 and by[B.BEFORE]["max abs diff"] == 0
    best = max(r["images/s bound"] for r in tables["bound"][1:])
    for r in by.values():
        assert r["images/s"] == pytest.approx(B.QUICK.batch / r["ms"] * 1e3)
        assert r["of bound"] == pytest.approx(r["images/s"] / best)
    for exact in (B.SHIPPED, B.FOLDED, B.KEPT):
        assert by[exact]["max rel diff"] < 1e-5 and abs(by[exact]["rFID diff"]) < 1e-3


@pytest.mark.slow  # the quick benchmark they share takes ~80 s on 2 cores
def test_batch_and_thread_rows(tables):
    assert [r["batch"] for r in tables["batch"]] == list(B.QUICK.batches)
    assert all(r["images/s"] == pytest.approx(r["batch"] / r["ms"] * 1e3) for r in tables["batch"])
    threads = tables["threads"]
    assert [r["threads"] for r in threads] == sorted({1, torch.get_num_threads(), os.cpu_count()})
    assert all(r["images/s per thread"] == pytest.approx(r["images/s"] / r["threads"]) for r in threads)


@pytest.mark.slow  # the quick benchmark they share takes ~80 s on 2 cores
def test_report_prints_every_table_and_row(tables):
    text = B.report(tables, B.QUICK)
    for heading in ("bound:", "variants (batch", "batch size", "threads ("):
        assert heading in text
    for name in (B.SHIPPED, B.BEFORE, B.FOLDED, B.KEPT):
        assert name in text
    assert B.BF16 not in text


@pytest.mark.slow
def test_bf16_row_is_reported_as_not_exact():
    """bf16 autocast is about 9x slower than float32 on a CPU without native bf16: slow."""
    from dataclasses import replace

    s = replace(B.QUICK, bf16=True)
    variants, unfused = B.build_variants(bf16=True)
    rows, _ = B.variant_rows(variants, s, B.Bound(unfused, s))
    row = next(r for r in rows if r["variant"] == B.BF16)
    assert row["max rel diff"] > 1e-3  # why it is reported only, never kept


def test_main_rejects_bad_threads(capsys):
    with pytest.raises(SystemExit) as exit_:
        B.main(["--threads", "0"])
    assert exit_.value.code == 2
    assert "--threads" in capsys.readouterr().err
