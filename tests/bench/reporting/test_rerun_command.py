"""The conclusion's command to run more seeds gives back the same run ids: parsed by the real command
line parser and expanded by the same code `run_bench.py` runs (bench.cli.run.grid), then resolved, its
seed-0 runs are exactly the grid's. An equal-bit grid's command repeats --bits-per-image (one
--codebook-sizes list would cross every method with every other's K); a fixed-codebook method (leech)
gets its own command."""
from __future__ import annotations

import shlex

import numpy as np

from bench.cli.run import build_parser, grid
from bench.core import run_folder
from bench.core.atomic import write_json_atomic
from bench.evaluation import evaluator
from bench.reporting import conclusion
from bench.reporting.summary import build
from bench.runs.config import resolve
from tests.bench.reporting.results_fixture import make_record


def _configs(argv: list[str]):
    return grid(build_parser().parse_args(argv))[1]


def _write_grid(out, argv: list[str]) -> set[str]:
    """Finished records of the grid's runs (fake metrics), as the runner writes them; their run ids."""
    rng = np.random.default_rng(0)
    ids = set()
    for cfg in _configs(argv):
        run = resolve(cfg)
        psnr = 20.0 + rng.normal(0, 1, 16)
        rec = make_record(run.dataset, run.method, run.codebook_size, run.seed,
                          {"utilization": 0.5, "perplexity": 4.0, "psnr": float(psnr.mean())})
        rec.update(run_id=run.run_id, config=run.to_dict(), bits_budget=cfg.bits_budget)
        rec["protocol"]["n_images"] = len(psnr)
        run_dir = run_folder.runs_dir(out) / run.run_id
        run_dir.mkdir(parents=True)
        write_json_atomic(run_dir / run_folder.RECORD, rec)
        evaluator.write_per_image(run_dir / run_folder.PER_IMAGE, [f"im{i}.png" for i in range(16)], {"psnr": psnr})
        ids.add(run.run_id)
    return ids


def _rerun(out) -> tuple[list[str], set[str]]:
    """The conclusion's commands, and the seed-0 run ids they would make."""
    line = conclusion.lines(build(out, metrics=["psnr"]))[-1]
    assert line.startswith("To resolve it, run the same grid with 3 seeds")
    commands = line.split(": ", 1)[1].split(" ; ")
    ids = set()
    for command in commands:
        argv = shlex.split(command)
        assert argv[:2] == ["python", "run_bench.py"]
        configs = _configs(argv[2:])
        assert {c.seed for c in configs} == {0, 1, 2}
        ids |= {resolve(c).run_id for c in configs if c.seed == 0}
    return commands, ids


def test_an_equal_bit_grid_is_rerun_with_its_budgets(tmp_path):
    argv = ["--methods", "vqgan,rvq,pq", "--bits-per-image", "512", "--bits-per-image", "1024",
            "--preset", "smoke", "--seeds", "0", "--out", str(tmp_path)]
    made = _write_grid(tmp_path, argv)
    assert len(made) == 6  # three methods at two budgets, each method its own K
    commands, ids = _rerun(tmp_path)
    assert len(commands) == 1 and "--bits-per-image 512 --bits-per-image 1024" in commands[0]
    assert "--codebook-sizes" not in commands[0]
    assert ids == made


def test_a_fixed_codebook_method_is_not_crossed_with_the_others_sizes(tmp_path):
    argv = ["--methods", "vqgan,leech", "--preset", "smoke", "--seeds", "0", "--out", str(tmp_path)]
    made = _write_grid(tmp_path, argv)  # the default grid: vqgan at the preset's K, leech at its own
    commands, ids = _rerun(tmp_path)
    assert len(commands) == 2 and any("--methods leech --datasets photos --codebook-sizes 196560" in c
                                      for c in commands)
    assert ids == made


def test_a_grid_against_another_fid_reference_is_rerun_against_it(tmp_path):
    """A reference other than val enters the run id (bench.runs.config), so the command must repeat it."""
    argv = ["--methods", "vqgan,fsq", "--preset", "smoke", "--seeds", "0", "--fid-reference", "train:64",
            "--out", str(tmp_path)]
    made = _write_grid(tmp_path, argv)
    commands, ids = _rerun(tmp_path)
    assert all("--fid-reference train:64" in c for c in commands)
    assert ids == made
