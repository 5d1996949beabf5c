"""Records written by vqbench 0.1 (before bench/ was reorganised) render exactly as that version
rendered them, and a metric added to the registry reaches the tables with its label, arrow and
decimals and takes part in the best marks."""
from __future__ import annotations

from pathlib import Path

import pytest

from bench.core import run_folder
from bench.core.atomic import write_json_atomic
from bench.evaluation.metrics.registry import HIGHER, LOWER, METRICS, PER_IMAGE, Metric, register_metric
from bench.reporting import tables
from bench.reporting.summary import build
from tests.bench.reporting.results_fixture import make_record
from tests.bench.reporting.test_tables import _md_tables

FIXTURES = Path(__file__).parent / "fixtures"
V0_1 = FIXTURES / "records_v0_1"  # 4 smoke runs (vqgan, lfq; K=16; seeds 0, 1) and the Markdown 0.1 printed


def test_version_0_1_records_render_the_markdown_that_version_printed():
    summary = build(V0_1)
    assert len(summary.runs) == 4
    assert tables.render(summary, "md") == (V0_1 / "table_v0_1.md").read_text()


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
    rec = make_record("photos", method, 16, 0, {"psnr": 20.0, "ssim": 0.5, "lpips": 0.3, "utilization": 0.5,
                                                 "perplexity": 4.0, **values})
    write_json_atomic(run_folder.runs_dir(out) / rec["run_id"] / run_folder.RECORD, rec)


def test_a_registered_metric_appears_with_its_label_arrow_decimals_and_marks(tmp_path, toy_metrics):
    for method, sharp, blur in (("a", 0.91234, 0.52), ("b", 0.95, 0.31), ("c", 0.5, 0.9)):
        _write(tmp_path, method, {"toy_sharpness": sharp, "toy_blur": blur})
    summary = build(tmp_path, metrics=["psnr", "toy_sharpness", "toy_blur"])
    md = _md_tables(tables.render(summary, "md"))["photos"].set_index("Method")
    assert list(md.columns) == ["Codebook size", "Tokens", "PSNR ↑", "Sharpness ↑", "Blur ↓", "Runs"]
    assert md.loc["b", "Sharpness ↑"] == "**0.950**" and md.loc["a", "Sharpness ↑"] == "<u>0.912</u>"
    assert md.loc["c", "Sharpness ↑"] == "0.500"
    # scale 10 and one decimal; lower is better
    assert md.loc["b", "Blur ↓"] == "**3.1**" and md.loc["a", "Blur ↓"] == "<u>5.2</u>" and md.loc["c", "Blur ↓"] == "9.0"
    tex = tables.render(summary, "tex")
    assert r"Sharpness $\uparrow$" in tex and r"Blur $\downarrow$" in tex and r"\textbf{0.950}" in tex


def test_a_misspelt_metric_is_suggested_from_the_registry(tmp_path, toy_metrics):
    _write(tmp_path, "a", {})  # the record has no toy value: the name is known from the registry alone
    with pytest.raises(ValueError, match="did you mean toy_sharpness"):
        build(tmp_path, metrics=["toy_sharpnes"])
    assert "Sharpness ↑" in tables.render(build(tmp_path, metrics=["toy_sharpness"]), "md")
