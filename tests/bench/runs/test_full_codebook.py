"""`--codebook-sizes full`: a method with a vocabulary takes all of it and the record stores the
integer; for other methods `full` is an error before any work."""
import pytest

import methods
from bench.cli import parsing
from bench.core.errors import UserError
from bench.runs.config import RunConfig, resolve
from bench.runs.runner import run_one


def test_full_is_the_whole_vocabulary_and_the_record_has_the_integer(tmp_path):
    run = resolve(RunConfig(method="vqct", codebook_size="full", preset="smoke", steps=2))
    options = methods.build_options("vqct")
    assert run.codebook_size == methods.entry("vqct").cls.full_codebook_size(run.model.embed_dim, options)
    assert run.run_id.startswith(f"vqct-photos-K{run.codebook_size}-")
    rec = run_one(RunConfig(method="vqct", codebook_size="full", preset="smoke", steps=2), tmp_path, progress=False)
    assert rec["status"] == "finished" and rec["config"]["codebook_size"] == run.codebook_size


def test_full_for_a_method_without_a_vocabulary_is_an_error():
    with pytest.raises(UserError, match="'vqgan' has no vocabulary"):
        resolve(RunConfig(method="vqgan", codebook_size="full", preset="smoke"))


def test_the_command_line_reads_full_or_a_number():
    parse = parsing.comma_list(parsing.codebook_size)
    assert parse("256,full,1024") == [256, "full", 1024]
    with pytest.raises(Exception, match="positive integer"):
        parse("0")
    # the run command's own parser takes it (it once kept positive integers only: `full` was refused)
    from bench.cli.run import build_parser

    assert build_parser().parse_args(["--codebook-sizes", "256,full"]).codebook_sizes == [256, "full"]


def test_full_for_vqgan_on_the_command_line_exits_2_with_one_line_and_no_run_folder(tmp_path, capsys):
    from bench.cli import main as cli

    code = cli.main(["--methods", "vqgan", "--codebook-sizes", "full", "--preset", "smoke", "--no-ray",
                     "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "vqgan" in err[0] and "vocabulary" in err[0]
    assert not (tmp_path / "out" / "runs").exists()
