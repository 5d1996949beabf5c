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
