"""The speed benchmark's logic on tiny shapes: its rows, ratios, pairing, memory reading and CSV.
(The numbers themselves are machine facts, reported in the README, never asserted.)"""
import csv

import pytest
import torch

import bench.speed.main as speed_main
from bench.speed.memory import peak_mb
from bench.speed.quantizers import COLUMNS, quantizer_rows
from bench.speed.shapes import Shape
from bench.speed.timing import interleaved_median_ms, paired_median_ms
from bench.speed.training import train_step_rows

CPU = torch.device("cpu")
TINY = Shape(1, 4, 4, 8, 64)


def test_rows_have_every_column_and_consistent_ratios():
    rows = quantizer_rows(["fsq", "vqct", "vqgan"], [TINY], CPU, reps=1, with_peers=False,
                          stress=Shape(1, 4, 4, 8, 32))
    assert all(set(r) == set(COLUMNS) for r in rows)
    by = {(r["method"], r["K"]): r for r in rows}
    assert {m for m, k in by if k == 64} == {"nearest-code-search", "vqgan", "fsq", "vqct", "vqct (dim D/2)"}
    # At the stress shape only the methods whose memory stays bounded run (vqct is not among them).
    assert {m for m, k in by if k == 32} == {"nearest-code-search", "vqgan", "fsq"}
    for r in rows:
        assert r["ms"] > 0 and r["lower_bound_ms"] > 0
        assert r["ratio_to_bound"] == pytest.approx(r["ms"] / r["lower_bound_ms"])
    assert by[("vqgan", 64)]["ratio_to_vqgan"] == 1.0
    assert by[("vqct", 64)]["ratio_to_vqgan"] > 0 and by[("vqct (dim D/2)", 64)]["ratio_to_vqgan"] > 0
    assert by[("vqct", 64)]["D"] == 8


def test_a_method_that_cannot_run_at_a_shape_is_a_row_with_the_reason():
    rows = quantizer_rows(["vqct"], [Shape(1, 2, 2, 4, 100_000)], CPU, reps=1, with_peers=False)
    row = next(r for r in rows if r["method"] == "vqct")
    assert row["ms"] is None and row["note"].startswith("not run:") and "vocabulary" in row["note"]


def test_peer_is_measured_beside_ours():
    pytest.importorskip("vector_quantize_pytorch", reason="the peer library is a test dependency")
    rows = quantizer_rows(["vqgan"], [TINY], CPU, reps=1)
    row = next(r for r in rows if r["method"] == "vqgan")
    assert row["peer"].startswith("VectorQuantize") and row["peer_ms"] > 0
    assert row["ratio_to_peer"] == pytest.approx(row["ms"] / row["peer_ms"])


def test_paired_timing_alternates():
    calls = []
    paired_median_ms(lambda: calls.append("a"), lambda: calls.append("b"), CPU, warmup=1, reps=3)
    assert calls[-6:] == ["a", "b"] * 3


def test_interleaved_timing_warms_up_and_measures_round_robin():
    calls = []
    ms = interleaved_median_ms({n: (lambda n=n: calls.append(n)) for n in "xyz"}, CPU, reps=2, warmup=1)
    assert calls == list("xyz") * 3 and set(ms) == set("xyz")


def test_peak_memory_sees_a_64_mib_allocation():
    def allocate():
        t = torch.ones(16 * 2**20)  # 64 MiB, touched
        return t.sum()

    allocate()  # warm: the pages are freed to the heap first, as in the benchmark
    assert peak_mb(allocate, CPU) > 48


def test_main_writes_the_csv_and_rejects_unknown_methods(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(speed_main, "QUICK_SHAPES", [TINY])
    monkeypatch.setattr(speed_main, "eval_rows", lambda *a, **k: [])
    out = tmp_path / "speed.csv"
    assert speed_main.main(["--quick", "--methods", "vqgan,fsq", "--csv", str(out), "--no-train-step"]) == 0
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == COLUMNS and {r["method"] for r in rows} == {"nearest-code-search", "vqgan", "fsq"}
    assert speed_main.main(["--quick", "--methods", "vqgann", "--csv", str(out)]) == 2
    assert "vqgan" in capsys.readouterr().err


def test_train_step_share_of_the_quantizer():
    rows = train_step_rows(["smoke"], ["vqgan"], CPU, reps=1)
    (row,) = rows
    assert row["step_ms"] > 0 and 0 < row["quantizer_share"] < 1
    assert row["images_per_s"] == pytest.approx(row["batch"] / row["step_ms"] * 1e3)


def test_the_stress_shape_follows_the_bounded_memory_capability(monkeypatch):
    import methods

    monkeypatch.setattr(methods.entry("fsq").cls, "bounded_memory", False)
    rows = quantizer_rows(["fsq", "vqgan"], [], CPU, reps=1, with_peers=False, stress=Shape(1, 4, 4, 8, 32))
    assert {r["method"] for r in rows} == {"nearest-code-search", "vqgan"}


def test_peers_get_the_latent_width_our_quantizer_asks_for():
    pytest.importorskip("vector_quantize_pytorch", reason="the peer library is a test dependency")
    rows = quantizer_rows(["lfq", "fsq"], [TINY], CPU, reps=1)
    by = {r["method"]: r for r in rows}
    assert by["lfq"]["peer"] == "LFQ" and by["fsq"]["peer"] == "FSQ"
    assert by["lfq"]["peer_ms"] > 0 and by["fsq"]["peer_ms"] > 0


def test_training_presets_and_their_cpu_batch(monkeypatch):
    assert speed_main.step_presets(quick=True) == (["cpu-tiny"], [])
    assert speed_main.step_presets(quick=False) == (["cpu-tiny", "gpu", "paper"], [])
    assert speed_main.cpu_batches(["cpu-tiny", "gpu", "paper"]) == {"gpu": 2, "paper": 2}
    without_gpu = {k: v for k, v in speed_main.PRESETS.items() if k != "gpu"}
    monkeypatch.setattr(speed_main, "PRESETS", without_gpu)
    assert speed_main.step_presets(quick=False) == (["cpu-tiny", "paper"], ["gpu"])


def test_a_replaced_batch_is_one_micro_batch():
    # smoke at batch 4 with micro-batches of 2 would accumulate twice; the replaced batch runs whole.
    from bench.runs.config import RunConfig, resolve

    assert resolve(RunConfig(method="vqgan", preset="paper")).accumulation == 2  # what the override must undo
    (row,) = train_step_rows(["smoke"], ["vqgan"], CPU, reps=1, batch={"smoke": 4})
    assert row["batch"] == 4 and row["peak_mb"] >= 0 and row["gan"] is True
