"""The conclusion after the tables: with fewer than 3 seeds it names no winner, whichever model the
images favour, and gives a command that parses and asks for 3 seeds; with 3 seeds it names the
method resolved better per metric, or the tie; `run_bench.py table` prints it after the tables."""
from __future__ import annotations

import re
import shlex

import pytest

from bench.cli import main as cli
from bench.reporting import conclusion
from bench.reporting.summary import build
from tests.bench.reporting.fake_runs import two_methods


def _said(out) -> list[str]:
    return conclusion.lines(build(out, metrics=["psnr"]))


def test_one_seed_names_no_winner_and_reads_the_same_whichever_model_the_images_favour(tmp_path):
    # the same folder name under two parents: the printed --out differs only by the parent
    two_methods(tmp_path / "a" / "res", 0.5, noise=1.0)  # beta resolved better over the images
    two_methods(tmp_path / "b" / "res", -0.5, noise=1.0)  # alpha resolved better over the images
    a = [line.replace(str(tmp_path / "a"), "X") for line in _said(tmp_path / "a" / "res")]
    b = [line.replace(str(tmp_path / "b"), "X") for line in _said(tmp_path / "b" / "res")]
    assert a == b
    text = "\n".join(a)
    assert text.startswith("Not resolved at this size") and "alpha and beta on photos: 1 seed" in text
    assert "is better than" not in text and " tie " not in text  # no method named resolved, no tie claimed
    assert "another seed or another machine can reverse them" in text
    # only these records' methods and numbers: no other benchmark's history under another dataset's table
    assert "vqct" not in text and "vqgan" not in text
    assert set(re.findall(r"\d+(?:\.\d+)?", text.split("To resolve it")[0])) == {"3", "1"}


def test_the_resolving_command_parses_and_asks_for_three_seeds_of_the_same_grid(tmp_path):
    from bench.cli.run import build_parser

    two_methods(tmp_path, 0.5, noise=1.0, seeds=(0,))
    command = conclusion.lines(build(tmp_path, metrics=["psnr"]))[-1].split(": ", 1)[1]
    argv = shlex.split(command)
    assert argv[:2] == ["python", "run_bench.py"]
    opts = build_parser().parse_args(argv[2:])
    assert opts.methods == ["alpha", "beta"] and opts.datasets == ["photos"] and opts.codebook_sizes == [16]
    assert opts.seeds == [0, 1, 2] and opts.preset == "cpu-tiny"  # explicit: the default preset depends on the machine
    assert opts.steps == 40  # not the preset's 600
    assert str(opts.out) == str(tmp_path)


def test_seeds_to_run_keep_the_seeds_already_run():
    assert conclusion._seeds_to_run({0}) == [0, 1, 2]
    assert conclusion._seeds_to_run({0, 5}) == [0, 1, 5]
    assert conclusion._seeds_to_run({1, 2, 3}) == [1, 2, 3]


@pytest.mark.parametrize("delta, winner, loser", [(0.5, "beta", "alpha"), (-0.5, "alpha", "beta")])
def test_three_seeds_name_the_method_resolved_better(tmp_path, delta, winner, loser):
    two_methods(tmp_path, delta, noise=1.0, seeds=(0, 1, 2))
    assert _said(tmp_path) == [f"PSNR on photos: {winner} is better than {loser} "
                               f"(resolved: paired t-test over 3 seeds, p < 0.05)."]


def test_three_seeds_with_a_large_run_to_run_spread_give_a_tie(tmp_path):
    two_methods(tmp_path, 0.5, noise=1.0, seeds=(0, 1, 2), seed_sd=1.5, draw=3)
    said = _said(tmp_path)
    assert len(said) == 1 and said[0].startswith("PSNR on photos: ")
    assert "tie (not resolved by a paired t-test over 3 seeds); about " in said[0]  # + seeds needed
    assert said[0].endswith(" seeds would resolve a difference of 0.33 dB.")
    assert {"alpha", "beta"} <= set(said[0].replace(",", " ").split())


def test_run_bench_table_prints_the_conclusion_after_the_tables(tmp_path, capsys):
    two_methods(tmp_path, 0.5, noise=1.0)
    assert cli.main(["table", "--out", str(tmp_path), "--metrics", "psnr"]) == 0
    printed = capsys.readouterr().out
    assert printed.index("Reconstruction on photos") < printed.index("Conclusion\n- Not resolved at this size")
    assert printed.index("Conclusion") < printed.index("tables written:")
    assert cli.main(["table", "--out", str(tmp_path), "--metrics", "psnr", "--format", "csv"]) == 0
    assert "Conclusion" not in capsys.readouterr().out  # CSV stays one parseable stream


def test_rows_of_different_steps_are_named_by_their_own_steps(tmp_path):
    import numpy as np

    from tests.bench.reporting.fake_runs import write_run

    rng = np.random.default_rng(1)
    difficulty = 25.0 + rng.normal(0, 3, 60)
    for seed in (0, 1, 2):  # the same method at two step counts: steps joins the row key
        write_run(tmp_path, "alpha", seed, {"psnr": difficulty + 2.0 + rng.normal(0, 0.3, 60)}, steps=80)
        write_run(tmp_path, "alpha", seed, {"psnr": difficulty + rng.normal(0, 0.3, 60)}, steps=40)
    assert _said(tmp_path) == ["PSNR on photos: alpha (steps 80) is better than alpha (steps 40) "
                               "(resolved: paired t-test over 3 seeds, p < 0.05)."]
