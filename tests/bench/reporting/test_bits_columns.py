"""Bits per image and bits per pixel in the reconstruction tables (record["bits_per_image"],
record["bits_per_pixel"]): shown beside Indices per image when some record has them, absent from
tables of records that predate them, never inferred from the method."""
from __future__ import annotations

import io
import math

import pandas as pd

from bench.core import run_folder
from bench.core.atomic import write_json_atomic
from bench.reporting import tables
from bench.reporting.summary import build
from tests.bench.reporting.results_fixture import RUNS, make_record
from tests.bench.reporting.test_tables import _md_tables

# The fixture's layout: 16 positions, 32 x 32 pixels. VQCT at K = 16 splits 6 adjectives : 10 nouns
# and emits 2 adjective indices and 1 noun index per position.
VQCT_BITS = 16 * (2 * math.log2(6) + math.log2(10))


def _write(out, with_bits: bool) -> None:
    for dataset, method, k, seed, metrics in RUNS:
        rec = make_record(dataset, method, k, seed, metrics)
        if with_bits and metrics:
            bits = VQCT_BITS if method == "vqct" else 16 * math.log2(k)
            rec.update(bits_per_image=bits, bits_per_pixel=bits / (32 * 32))
        run_dir = run_folder.runs_dir(out) / rec["run_id"]
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run_dir / run_folder.RECORD, rec)


def test_bits_columns_follow_indices_per_image_in_every_format(tmp_path):
    _write(tmp_path, with_bits=True)
    built = build(tmp_path)
    photos = _md_tables(tables.render(built, "md"))["photos"].set_index(["Method", "Codebook size"])
    cols = list(photos.columns)
    assert cols[cols.index("Indices per image") + 1: cols.index("Indices per image") + 3] == \
        ["Bits per image", "Bits per pixel"]
    assert photos.loc[("vqgan", "16"), ["Bits per image", "Bits per pixel"]].tolist() == ["64", "0.0625"]
    assert photos.loc[("vqgan", "32"), "Bits per image"] == "80"
    assert photos.loc[("vqct", "16"), "Bits per image"] == f"{VQCT_BITS:.1f}"  # not whole: one decimal
    assert photos.loc[("lfq", "16"), "Bits per image"] == "—"  # failed: no record of its budget
    assert photos.loc[("vqct", "32"), "Bits per image"] == "—"  # missing
    back = pd.read_csv(io.StringIO(tables.render(built, "csv")))
    vqct = back[(back["Method"] == "vqct") & (back["Codebook size"] == 16) & (back["Dataset"] == "photos")].iloc[0]
    assert math.isclose(vqct["Bits per image"], VQCT_BITS, rel_tol=1e-9)  # the value, not its text
    assert "Indices per image & Bits per image & Bits per pixel" in tables.render(built, "tex")


def test_records_without_bits_keep_the_old_layout(tmp_path):
    _write(tmp_path, with_bits=False)
    built = build(tmp_path)
    assert "Bits per image" not in built.per_dataset.columns
    assert "Bits per image" not in tables.render(built, "md")


def test_an_equal_bit_grid_has_no_missing_cells_at_other_methods_sizes(tmp_path):
    """--bits-per-image: vqgan at K=256 and rvq (2 levels) at K=16 both spend 8 bits per position, so
    (rvq, 256) and (vqgan, 16) are not missing; with a conventional grid (vqgan at 256 and 1024) the
    cell of rvq at K=1024 (10 bits per position: no rvq run spends that) still is."""
    for method, k, bits in (("vqgan", 256, 128.0), ("rvq", 16, 128.0), ("vqgan", 1024, 160.0)):
        rec = make_record("photos", method, k, 0, {"fid": 10.0, "psnr": 20.0, "ssim": 0.5, "lpips": 0.3,
                                                   "utilization": 0.5, "perplexity": 6.0})
        rec.update(bits_per_image=bits, bits_per_pixel=bits / 1024)
        run_dir = run_folder.runs_dir(tmp_path) / rec["run_id"]
        run_dir.mkdir(parents=True)
        write_json_atomic(run_dir / run_folder.RECORD, rec)
    frame = build(tmp_path).per_dataset.set_index(["Method", "Codebook size"])
    assert sorted(frame.index) == [("rvq", 16), ("rvq", 1024), ("vqgan", 256), ("vqgan", 1024)]
    assert frame.loc[("rvq", 1024), "Status"] == "missing"
