"""'How these numbers compare' (bench.reporting.comparability) from records built here: the runs'
protocol stated, published numbers that share it listed, the others with their reasons; and tables
that keep two FID references in two columns."""
from __future__ import annotations

import pandas as pd

from bench.core import run_folder
from bench.core.atomic import write_json_atomic
from bench.reporting import comparability, frames, tables
from bench.reporting.report import render_html
from bench.reporting.summary import build


def _record(run_id, dataset="imagenet", reference="val", n=50_000, resolution=256, fid=3.0, method="vqgan", seed=0):
    return {"run_id": run_id, "status": "finished",
            "config": {"method": method, "dataset": dataset, "codebook_size": 1024, "seed": seed, "preset": "gpu",
                       "steps": 10},
            "metrics": {"fid": fid, "psnr": 20.0},
            "protocol": {"dataset": dataset, "resolution": resolution, "n_images": n,
                         "preprocessing": {"crop": f"center {resolution}x{resolution}"},
                         "evaluation_precision": "float32: autocast off, TF32 off",
                         "fid": {"n_images": n, "reference": reference}}}


PUBLISHED = pd.DataFrame([
    {"ref": "same", "method": "A", "codebook_size": 1024, "dataset": "imagenet", "fid": 4.0, "fid_reference": "val",
     "resolution": 256, "fid_n_images": 50_000},
    {"ref": "adm", "method": "B", "codebook_size": 1024, "dataset": "imagenet", "fid": 4.28,
     "fid_reference": "stats:VIRTUAL_imagenet256_labeled.npz@abc", "resolution": 256, "fid_n_images": 50_000},
    {"ref": "vague", "method": "C", "codebook_size": 16384, "dataset": "imagenet", "fid": 5.0, "fid_reference": None,
     "resolution": 256, "fid_n_images": None},
    {"ref": "small", "method": "D", "codebook_size": 1024, "dataset": "imagenet", "fid": 6.0, "fid_reference": "val",
     "resolution": 128, "fid_n_images": 10_000},
    {"ref": "elsewhere", "method": "E", "codebook_size": 1024, "dataset": "ffhq", "fid": 1.0, "fid_reference": "val",
     "resolution": 256, "fid_n_images": 50_000},
])


def test_published_numbers_that_share_the_protocol_and_why_the_others_do_not():
    recs = [_record("a"), _record("b", seed=1), {"run_id": "c", "status": "failed", "config": {"dataset": "imagenet"}}]
    (run,) = comparability.run_protocols(recs)
    assert (run.references, run.image_counts, run.resolutions, run.runs) == (["val"], [50_000], [256], 2)
    assert run.crops == ["center 256x256"] and run.precisions == ["float32: autocast off, TF32 off"]
    rows = {r.ref: r for r in comparability.compare(run, PUBLISHED)}
    assert set(rows) == {"same", "adm", "vague", "small"}  # ffhq is not among the runs' datasets
    assert rows["same"].shares
    assert rows["adm"].reasons == ["other FID reference (stats:VIRTUAL_imagenet256_labeled.npz@abc; here val)"]
    assert rows["vague"].reasons == ["FID reference not stated", "image count not stated"]
    assert rows["small"].reasons == ["other resolution (128 px; here 256 px)", "other image count (10,000; here 50,000)"]
    page = comparability.section_html(recs, PUBLISHED)
    assert "Published numbers that share this protocol: A K=1024 [same] rFID 4." in page
    assert "other FID reference" in page and "necessary for comparing rFIDs, not sufficient" in page
    assert "<th>evaluation precision</th><td>float32: autocast off, TF32 off</td>" in page


def test_the_report_has_the_section_and_the_real_data_file_is_read(tmp_path):
    out = tmp_path / "out"
    for rec in (_record("r1", dataset="cub200", n=252, resolution=32),):
        write_json_atomic(run_folder.run_dir(out, rec["run_id"]) / run_folder.RECORD, rec)
    built = build(out)
    page = render_html(built, {"figures": {}}, [_record("r1", dataset="cub200", n=252, resolution=32)], out)
    assert 'id="compare"' in page and "How these numbers compare" in page
    # reported_results.csv's LG-VQ cub200 rows: val at 256 px, image count not stated
    assert "other resolution (256 px; here 32 px); image count not stated" in page


def test_two_references_never_share_a_column(tmp_path):
    out = tmp_path / "out"
    stats = "stats:VIRTUAL_imagenet256_labeled.npz@0123456789"
    for rec in (_record("v", fid=2.0), _record("s", reference=stats, fid=4.0, method="lfq", n=252),
                _record("old", fid=3.0, method="fsq")):
        if rec["run_id"] == "old":  # a record from before the option: its sentence means val
            rec["protocol"]["fid"]["reference"] = "originals of the same split, cached as x.npz"
        write_json_atomic(run_folder.run_dir(out, rec["run_id"]) / run_folder.RECORD, rec)
    built = build(out)
    text = tables.render(built, "md")
    assert frames.metric_columns(built.runs, ["fid"]) == ["fid", f"fid@{stats}"]  # asked for: both references
    header = next(line for line in text.splitlines() if line.startswith("| Method"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert "rFID (vs val) ↓" in cols and f"rFID (vs {stats}) ↓" in cols
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
            for line in text.splitlines() if line.startswith("| ") and not line.startswith("| Method")
            and not line.startswith("|:")}
    val_col, stats_col = cols.index("rFID (vs val) ↓"), cols.index(f"rFID (vs {stats}) ↓")
    assert rows["lfq"][val_col] == "—" and rows["lfq"][stats_col] == "4.00†"  # 252 images: daggered, and noted
    assert "† rFID from fewer than 2048 images (n = 252)" in text
    assert rows["vqgan"][val_col].startswith("2.00") and rows["vqgan"][stats_col] == "—"
    assert rows["fsq"][val_col].startswith("3.00")
