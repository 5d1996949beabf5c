"""The Generation section from hand-made records: gFID (with its n and dagger) beside the rFID of the
tokenizer's own record, seeds averaged, n/a with the recorded reason, skipped priors kept and
explained; `run_bench.py table` prints it after the reconstruction tables and writes its files.
(Intervals from stored features: test_bootstrap.py; these records store none, so no ±.)"""
from __future__ import annotations

import io

import pandas as pd
import pytest

from bench.cli import main as cli
from bench.core import run_folder
from bench.core.atomic import write_json_atomic
from bench.generation.record import PriorRecord
from bench.reporting import generation_table


def _tokenizer(out, run_id, seed, rfid, status="finished"):
    record = {"run_id": run_id, "status": status, "error": None if status == "finished" else "RuntimeError: boom",
              "config": {"method": "vqgan", "dataset": "photos", "codebook_size": 256, "seed": seed,
                         "preset": "cpu-tiny", "steps": 600},
              "metrics": {"fid": rfid, "psnr": 20.0 + seed}, "protocol": {"fid": {"n_images": 252}}, "tokens": 64,
              "wall_s": 1.0}
    write_json_atomic(run_folder.run_dir(out, run_id) / run_folder.RECORD, record)


def _prior(out, run_id, seed, status="finished", gfid=None, copied_rfid=999.0):
    tokenizer = {"run_id": run_id, "method": "vqgan", "dataset": "photos", "codebook_size": 256, "seed": seed,
                 "preset": "cpu-tiny", "rfid": copied_rfid}
    rec = PriorRecord(f"{run_id}--cpu-tiny-s0-abc", status, tokenizer, {"preset": "cpu-tiny", "seed": 0})
    if status == "finished":
        rec.layout = {"sequence_length": 64}
        rec.metrics.update(gfid=gfid, gkid=0.0125, precision=0.5, recall=0.25, val_nll=3.25)
        rec.protocol = {"fid": {"generated": 1000}, "inception_score": {"available": False,
                                                                        "why": "the FID weights have no logits"}}
    else:
        rec.error = f"tokenizer run {run_id} is 'failed', not finished"
    rec.write(out)


@pytest.fixture
def out(tmp_path):
    _tokenizer(tmp_path, "tok-a", 0, rfid=12.5)
    _prior(tmp_path, "tok-a", 0, gfid=40.0)
    _tokenizer(tmp_path, "tok-b", 1, rfid=14.5)
    _prior(tmp_path, "tok-b", 1, gfid=50.0)
    _tokenizer(tmp_path, "tok-c", 2, rfid=None, status="failed")
    _prior(tmp_path, "tok-c", 2, status="skipped")
    return tmp_path


def test_row_has_gfid_beside_the_tokenizers_rfid(out):
    rows = generation_table.read(out)
    assert sorted(rows["Status"]) == ["finished", "finished", "skipped"]
    assert rows.set_index("run_id").loc["tok-a", "rfid"] == 12.5  # the tokenizer's record, not the copy (999)
    text = generation_table.render(rows, "terminal")
    [row] = [line for line in text.splitlines() if line.startswith("| vqgan")]
    assert "13.50† *" in row  # the only finished row of its dataset is the best of each column
    cells = [c.strip().removesuffix(" *") for c in row.strip("|").split("|")]
    # Method, K, Prior, Prior tokens, rFID (mean over the two finished seeds, 252 images), gFID (n = 1000), KID,
    # IS, precision, recall, NLL, Runs, 95% interval: two seeds and no stored features, so no ± anywhere
    assert cells == ["vqgan", "256", "cpu-tiny", "64", "13.50†", "45.00 (n=1000)†", "0.0125", "n/a",
                     "0.500", "0.250", "3.250", "2/3 (1 skipped)", "—"]
    assert "n/a (IS): the FID weights have no logits." in text
    assert "† FID from fewer than 2048 images (n = 252, 1000)" in text
    assert "skipped: prior tok-c--cpu-tiny-s0-abc (vqgan, K=256, seed 2): tokenizer run tok-c is 'failed'" in text


def test_formats_and_files(out):
    rows = generation_table.read(out)
    md = generation_table.render(rows, "md")
    assert "### Generation on photos" in md and "**45.00 (n=1000)†**" in md  # one row: best
    assert r"$^\dagger$" in generation_table.render(rows, "tex")
    frame = pd.read_csv(io.StringIO(generation_table.render(rows, "csv")))
    assert frame.loc[0, "gfid"] == 45.0 and frame.loc[0, "rfid"] == 13.5 and frame.loc[0, "Finished"] == 2
    assert frame.loc[0, "gfid_std"] == pytest.approx(7.0711, abs=1e-4)  # the frame keeps the std over seeds
    paths = generation_table.write(rows, out)
    assert sorted(p.name for p in paths) == ["generation.csv", "generation.md", "generation.tex"]


def test_selection_by_method_dataset_and_run():
    rows = generation_table.select(pd.DataFrame({"Method": ["a", "b"], "Dataset": ["x", "x"],
                                                 "run_id": ["r1", "r2"]}), methods=["b"], run_ids={"r2", "r3"})
    assert rows["run_id"].tolist() == ["r2"]


def test_table_cli_prints_generation_after_reconstruction(out, capsys):
    assert cli.main(["table", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.index("Reconstruction on photos") < text.index("Generation on photos")
    assert (out / "tables" / "generation.md").is_file()
    assert cli.main(["table", "--out", str(out), "--methods", "vqct"]) == 2  # no records for that method
    capsys.readouterr()


def test_no_prior_records_no_generation_section(tmp_path, capsys):
    _tokenizer(tmp_path, "tok-a", 0, rfid=12.5)
    assert cli.main(["table", "--out", str(tmp_path)]) == 0
    assert "Generation" not in capsys.readouterr().out
    assert not (tmp_path / "tables" / "generation.md").exists()
