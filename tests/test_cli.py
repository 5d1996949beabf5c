"""The command line: an end-to-end run that writes records and tables, and bad input that exits 2
with one line before any work starts."""
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli.main import main

REPO = Path(__file__).resolve().parents[1]
SMOKE = ["--preset", "smoke", "--steps", "4", "--codebook-sizes", "16", "--no-progress"]


def test_end_to_end_run_writes_records_and_tables(tmp_path, capsys):
    assert main(["--methods", "vqgan", *SMOKE, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "vqgan" in out and "PSNR" in out
    assert len(list((tmp_path / "runs").glob("*/record.json"))) == 1
    for ext in ("md", "csv", "tex"):
        assert (tmp_path / "tables" / f"results.{ext}").read_text().strip()
    # A second invocation skips the finished run; `table` rebuilds from the records.
    assert main(["--methods", "vqgan", *SMOKE, "--out", str(tmp_path)]) == 0
    assert "skipped" in capsys.readouterr().out
    assert main(["table", "--out", str(tmp_path), "--format", "csv"]) == 0
    assert "vqgan" in capsys.readouterr().out


def test_list_shows_methods_datasets_presets(capsys):
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    for word in ("methods:", "vqgan", "datasets:", "photos", "presets:", "cpu-tiny", "paper"):
        assert word in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--methods", "vqgn"], "did you mean 'vqgan'"),
        (["--datasets", "foto"], "did you mean 'photos'"),
        (["--preset", "tiny"], "unknown preset"),
        (["--codebook-sizes", "0"], "positive integer"),
        (["--steps", "-5"], "positive integer"),
        (["--seeds", "x"], "not an integer"),
        (["--option", "vqgan.betta=1"], "no option 'betta'"),
        (["--methods", "vqgan", "--option", "lfq.entropy_weight=1"], "not among --methods"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        code = main([*args, "--out", str(tmp_path)])
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()


def test_table_without_records_is_an_error(tmp_path, capsys):
    assert main(["table", "--out", str(tmp_path)]) == 2
    assert "no result records" in capsys.readouterr().err


def test_real_process_exit_code_and_help():
    bad = subprocess.run([sys.executable, "run_bench.py", "--methods", "vqgn"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    ok = subprocess.run([sys.executable, "run_bench.py", "--help"], cwd=REPO, capture_output=True, text=True,
                        timeout=120)
    assert ok.returncode == 0 and "--codebook-sizes" in ok.stdout and "--backend NAME" in ok.stdout
