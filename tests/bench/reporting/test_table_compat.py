"""Records written by vqbench 0.1 (before bench/ was reorganised) still render, with the means that
version printed; and a metric added to the registry reaches the tables with its label, arrow and
decimals and takes part in the best marks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.core import run_folder
from bench.core.atomic import write_json_atomic
from bench.evaluation import evaluator
from bench.evaluation.metrics.registry import HIGHER, LOWER, METRICS, PER_IMAGE, Metric, register_metric
from bench.reporting import tables
from bench.reporting.summary import build
from tests.bench.reporting.results_fixture import make_record
from tests.bench.reporting.test_tables import _md_tables

FIXTURES = Path(__file__).parent / "fixtures"
V0_1 = FIXTURES / "records_v0_1"  # 4 smoke runs (vqgan, lfq; K=16; seeds 0, 1) and the Markdown 0.1 printed


def _cells(md: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines() if line.startswith("| ")]


def test_version_0_1_records_render_as_stored_with_the_means_that_version_printed():
    """table_v0_1.md is what 0.1 printed (mean ± std over 2 seeds, marks by value). Since issue 15 the
    ± is a 95% interval and marks need a test; these records store no per-image values and have 2
    seeds, so they get neither. Since issue 19 0.1's Tokens column (code positions) is Positions,
    followed by Indices per image, which these records predate: shown empty, never inferred.
    table_v0_1_issue15.md is today's rendering, and every mean is 0.1's."""
    summary = build(V0_1)
    assert len(summary.runs) == 4
    text = tables.render(summary, "md")
    assert text == (V0_1 / "table_v0_1_issue15.md").read_text()
    old, new = _cells((V0_1 / "table_v0_1.md").read_text()), _cells(text)
    strip = lambda c: c.replace("**", "").replace("<u>", "").replace("</u>", "").split(" ± ")[0]
    new_col = {h: i for i, h in enumerate(new[0])}
    renamed = {"Tokens": "Positions", "rFID ↓": "rFID (vs val) ↓"}  # since issue 28 headers name the FID reference
    for old_row, new_row in zip(old[1:], new[1:]):
        assert [strip(c) for c in old_row] == [new_row[new_col[renamed.get(h, h)]] for h in old[0]]
        assert new_row[new_col["Positions"]] == "64" and new_row[new_col["Indices per image"]] == "—"
    assert "No marks (nothing to test" in text


def _not_computed_here(originals, recons):
    raise AssertionError("the tables read recorded values; they never compute a metric")


@pytest.fixture()
def toy_metrics():
    """Two metrics registered for one test: a higher-is-better one with 3 decimals and a lower one."""
    added = [register_metric(Metric("toy_sharpness", "Sharpness", HIGHER, 3, kind=PER_IMAGE, fn=_not_computed_here)),
             register_metric(Metric("toy_blur", "Blur", LOWER, 1, scale=10.0, kind=PER_IMAGE,
                                    fn=_not_computed_here))]
    yield added
    for m in added:
        METRICS.remove(m.key)


def _write(out: Path, method: str, values: dict[str, float]) -> None:
    """A record and its per_image.npz: each toy metric's per-image values are its mean plus an image
    difficulty shared by all methods (so paired differences of these sizes are resolved)."""
    rec = make_record("photos", method, 16, 0, {"psnr": 20.0, "ssim": 0.5, "lpips": 0.3, "utilization": 0.5,
                                                 "perplexity": 4.0, **values})
    run_dir = run_folder.runs_dir(out) / rec["run_id"]
    write_json_atomic(run_dir / run_folder.RECORD, rec)
    difficulty = np.linspace(-0.01, 0.01, 32)
    evaluator.write_per_image(run_dir / run_folder.PER_IMAGE, [f"im{i}.png" for i in range(32)],
                              {k: v + difficulty for k, v in values.items()})


def test_a_registered_metric_appears_with_its_label_arrow_decimals_and_marks(tmp_path, toy_metrics):
    for method, sharp, blur in (("a", 0.91234, 0.52), ("b", 0.95, 0.31), ("c", 0.5, 0.9)):
        _write(tmp_path, method, {"toy_sharpness": sharp, "toy_blur": blur})
    summary = build(tmp_path, metrics=["psnr", "toy_sharpness", "toy_blur"])
    md = _md_tables(tables.render(summary, "md"))["photos"].set_index("Method")
    assert list(md.columns) == ["Codebook size", "Positions", "Indices per image", "PSNR ↑", "Sharpness ↑", "Blur ↓", "Runs", "Images",
                                "95% interval"]
    # the same difficulty in every run: each paired difference is exact, so every one is resolved; the
    # interval of a mean of 32 values evenly spread over +-0.01 (sd 0.0059) is about +-1.96 * 0.0059 / sqrt(32) = 0.002
    assert md.loc["b", "Sharpness ↑"] == "**0.950 ± 0.002**" and md.loc["a", "Sharpness ↑"] == "<u>0.912 ± 0.002</u>"
    assert md.loc["c", "Sharpness ↑"] == "0.500 ± 0.002"
    # scale 10 and one decimal; lower is better
    assert md.loc["b", "Blur ↓"] == "**3.1 ± 0.0**" and md.loc["a", "Blur ↓"] == "<u>5.2 ± 0.0</u>"
    assert md.loc["c", "Blur ↓"] == "9.0 ± 0.0"
    tex = tables.render(summary, "tex")
    assert r"Sharpness $\uparrow$" in tex and r"Blur $\downarrow$" in tex and r"\textbf{0.950 $\pm$ 0.002}" in tex


def test_a_misspelt_metric_is_suggested_from_the_registry(tmp_path, toy_metrics):
    _write(tmp_path, "a", {})  # the record has no toy value: the name is known from the registry alone
    with pytest.raises(ValueError, match="did you mean toy_sharpness"):
        build(tmp_path, metrics=["toy_sharpnes"])
    assert "Sharpness ↑" in tables.render(build(tmp_path, metrics=["toy_sharpness"]), "md")
