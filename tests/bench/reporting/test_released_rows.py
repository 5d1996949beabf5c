"""Records of released checkpoints (`"source": "released"`, written by `run_bench.py eval`, preset
`released-<kind>`) are rows of their own, labelled released, never averaged with trained runs of the
same method and K, and never in the best/second marks, the comparisons, the cross-dataset ranks or
the conclusion, however good their numbers."""
from __future__ import annotations

import numpy as np
import pytest

from bench.core import run_folder
from bench.core.atomic import write_json_atomic
from bench.evaluation import evaluator
from bench.reporting import conclusion, frames, tables
from bench.reporting.summary import build
from tests.bench.reporting.fake_runs import write_run
from tests.bench.reporting.results_fixture import make_record
from tests.bench.reporting.test_tables import _md_tables

N = 100


def _released(out, dataset: str, method: str, psnr: np.ndarray) -> dict:
    """A record as bench.released.evaluate writes it (source, checkpoint, preset released-<kind>)."""
    rec = make_record(dataset, method, 16, 0, {"utilization": 1.0, "perplexity": 16.0, "psnr": float(psnr.mean())})
    rec["run_id"] = f"released-taming-{method}-{dataset}-K16-0123456789"
    rec["source"] = "released"
    rec["checkpoint"] = {"kind": "taming", "path": "/ckpt/last.ckpt", "sha256": "ab" * 32}
    rec["config"].update(preset="released-taming", steps=None)
    rec["protocol"]["n_images"] = N
    run_dir = run_folder.runs_dir(out) / rec["run_id"]
    write_json_atomic(run_dir / run_folder.RECORD, rec)
    evaluator.write_per_image(run_dir / run_folder.PER_IMAGE, [f"im{i:04d}.png" for i in range(N)], {"psnr": psnr})
    return rec


@pytest.fixture()
def out(tmp_path):
    rng = np.random.default_rng(0)
    for dataset in ("photos", "cub200"):
        difficulty = 25.0 + rng.normal(0, 3, N)
        for method, shift in (("vqgan", 0.0), ("vqct", 1.0)):  # vqct resolved better over the images
            write_run(tmp_path, method, 0, {"psnr": difficulty + shift + rng.normal(0, 0.5, N)}, dataset=dataset)
        # the released vqgan is far better than both trained rows: it must still take no mark
        _released(tmp_path, dataset, "vqgan", difficulty + 5.0 + rng.normal(0, 0.5, N))
    return tmp_path


def test_a_released_record_is_its_own_row_and_not_averaged_with_trained_runs(out):
    df = build(out, metrics=["psnr"]).per_dataset
    photos = df[df["Dataset"] == "photos"]
    assert sorted(photos["Source"]) == [frames.MEASURED, frames.MEASURED, frames.RELEASED]
    rel = photos[photos["Source"] == frames.RELEASED].iloc[0]
    trained = photos[(photos["Source"] == frames.MEASURED) & (photos["Method"] == "vqgan")].iloc[0]
    assert rel["Method"] == "vqgan" and rel["Ref"] == "taming" and rel["Finished"] == 1
    assert rel["psnr"] == pytest.approx(trained["psnr"] + 5.0, abs=0.3)  # its own mean, not pooled
    assert trained["Finished"] == 1 and trained["Expected"] == 1  # the released run is not a seed of vqgan
    assert rel["psnr_lo"] < rel["psnr"] < rel["psnr_hi"]  # measured like the others: it has its interval
    assert rel["psnr_rank"] == 0


def test_released_rows_take_no_mark_and_the_trained_best_keeps_its_bold(out):
    summary = build(out, metrics=["psnr"])
    md = _md_tables(tables.render(summary, "md"))["photos"].set_index("Method")
    assert md.loc["vqgan (released)", "PSNR ↑"].replace(".", "").replace(" ± ", "").isdigit()  # no ** or <u>
    assert md.loc["vqct", "PSNR ↑"].startswith("**") and md.loc["vqgan", "PSNR ↑"].startswith("<u>")
    assert "vqgan" not in set(summary.comparisons["best_method"])  # every test is against vqct
    assert set(summary.comparisons["Source"]) == {frames.MEASURED}
    assert "Rows marked (released) are released checkpoints" in tables.render(summary, "md")


def test_released_rows_stay_out_of_the_cross_dataset_ranks_and_the_conclusion(out):
    summary = build(out, metrics=["psnr"])
    cross = summary.cross.set_index(["Source", "Method"])
    assert np.isnan(cross.loc[(frames.RELEASED, "vqgan"), "Mean rank"])
    assert cross.loc[(frames.MEASURED, "vqct"), "Mean rank"] == 1.0
    assert cross.loc[(frames.MEASURED, "vqct"), "Resolved wins"] == 2
    said = " ".join(conclusion.lines(summary)).replace(str(out), "OUT")  # the test folder's name says released
    assert "vqct and vqgan on cub200" in said and "released" not in said and "taming" not in said
    assert "--preset cpu-tiny" in said  # the resolving command is the trained grid's
