"""Runs of one method trained with different options are different rows, never one mean, and the
conclusion's command repeats each run's options, so it reruns the same runs with more seeds."""
from __future__ import annotations

import shlex

import numpy as np

from bench.cli.run import _method_options, build_parser
from bench.core import run_folder
from bench.core.atomic import write_json_atomic
from bench.evaluation import evaluator
from bench.reporting import conclusion
from bench.reporting.run_options import option_flags, options_labels
from bench.reporting.summary import build
from bench.runs.config import RunConfig, resolve
from tests.bench.reporting.results_fixture import make_record


def _write(out, run_id, config, psnr):
    rec = make_record(config["dataset"], config["method"], config["codebook_size"], config["seed"],
                      {"utilization": 0.5, "perplexity": 4.0, "psnr": float(np.mean(psnr))})
    rec.update(run_id=run_id, config=config)
    rec["protocol"]["n_images"] = len(psnr)
    run_dir = run_folder.runs_dir(out) / run_id
    run_dir.mkdir(parents=True)
    write_json_atomic(run_dir / run_folder.RECORD, rec)
    evaluator.write_per_image(run_dir / run_folder.PER_IMAGE, [f"im{i}.png" for i in range(len(psnr))], {"psnr": psnr})


def _smoke(method, seed, **options):
    return resolve(RunConfig(method=method, codebook_size=16, preset="smoke", seed=seed, method_options=options))


def test_two_recipes_of_one_method_are_two_rows_with_their_own_seeds(tmp_path):
    rng = np.random.default_rng(0)
    for seed in (0, 1, 2):
        for beta, level in ((0.25, 20.0), (1.0, 24.0)):
            run = _smoke("vqgan", seed, beta=beta)
            _write(tmp_path, run.run_id, run.to_dict(), level + rng.normal(0, 1, 40))
    rows = build(tmp_path, metrics=["psnr"]).per_dataset
    assert list(rows["Options"]) == ["beta=0.25", "beta=1.0"]
    assert list(rows["Finished"]) == [3, 3]
    assert abs(rows["psnr"].iloc[0] - 20.0) < 0.6 and abs(rows["psnr"].iloc[1] - 24.0) < 0.6  # not their mean, 22
    said = conclusion.lines(build(tmp_path, metrics=["psnr"]))
    assert said == ["PSNR on photos: vqgan (beta=1.0) is better than vqgan (beta=0.25) "
                    "(resolved: paired t-test over 3 seeds, p < 0.05)."]


def test_labels_name_only_the_options_that_vary_within_a_method():
    recs = [{"config": {"dataset": "d", "method": "m", "method_options": {"a": 1, "b": [1, 2]}}},
            {"config": {"dataset": "d", "method": "m", "method_options": {"a": 2, "b": (1, 2)}}},
            {"config": {"dataset": "d", "method": "n", "method_options": {"a": 3}}},
            {"config": {"dataset": "d", "method": "m", "method_options": {"a": 1, "b": [1, 2]},
                        "dataset_options": {"hflip": False}}}]
    assert options_labels(recs) == ["a=1, dataset.hflip=None", "a=2, dataset.hflip=None", "",
                                    "a=1, dataset.hflip=False"]


def _configs_of(command: str) -> list[RunConfig]:
    """The RunConfigs `run_bench.py` builds from a printed command (as bench.cli.run.run does)."""
    argv = shlex.split(command)
    assert argv[:2] == ["python", "run_bench.py"]
    opts = build_parser().parse_args(argv[2:])
    per_method = _method_options(opts.methods, opts.option)
    return [RunConfig(method=m, dataset=d, codebook_size=k, seed=s, preset=opts.preset, steps=opts.steps,
                      method_options=per_method.get(m, {}), dataset_options=dict(opts.dataset_option))
            for d in opts.datasets for k in opts.codebook_sizes for m in opts.methods for s in opts.seeds]


def test_the_resolving_commands_rerun_every_recipe_with_its_own_options(tmp_path):
    runs = [_smoke("vqgan", 0), _smoke("vqgan", 0, beta=1.0, legacy=True), _smoke("vqgan-ema", 0)]
    for run, level in zip(runs, (20.0, 21.0, 22.0)):
        _write(tmp_path, run.run_id, run.to_dict(), level + np.zeros(8))
    line = conclusion.lines(build(tmp_path, metrics=["psnr"]))[-1]
    commands = line.split(": ", 1)[1].split(" ; ")
    assert len(commands) == 2  # vqgan's two recipes cannot share one command; vqgan-ema joins the first
    ids = {resolve(c).run_id for command in commands for c in _configs_of(command) if c.seed == 0}
    assert ids == {r.run_id for r in runs}


def test_flags_give_back_the_options_and_leave_defaults_out():
    config = _smoke("vqgan", 0, beta=0.5).to_dict()
    assert option_flags(config) == "--option vqgan.beta=0.5"
    assert option_flags(_smoke("vqgan", 0).to_dict()) == ""
    odd = {"method": "vqgan", "method_options": {"beta": 0.25, "no_such": "union:folder:/a b,c"},
           "dataset_options": {"train_crop": "center"}}
    flags = shlex.split(option_flags(odd))
    assert flags == ["--option", "vqgan.no_such='union:folder:/a b,c'", "--dataset-option", "train_crop=center"]
    opts = build_parser().parse_args(["--methods", "vqgan", *flags])
    assert opts.option == [("vqgan", "no_such", "union:folder:/a b,c")]
    assert option_flags({"method": "not-a-method", "method_options": {"x": 1}}) is None


def test_generation_rows_keep_the_tokenizers_recipes_apart(tmp_path):
    """Priors on tokenizers of one method with different options: two Generation rows, not one mean."""
    from bench.reporting.generation_table import generation_frame, prior_rows

    recs = []
    for beta, gfid in ((0.25, 100.0), (1.0, 200.0)):
        run = _smoke("vqgan", 0, beta=beta)
        _write(tmp_path, run.run_id, run.to_dict(), np.full(4, 20.0))
        recs.append({"status": "finished", "prior_id": f"{run.run_id}--smoke", "config": {"preset": "smoke", "seed": 0},
                     "tokenizer": {"run_id": run.run_id, "dataset": "photos", "method": "vqgan", "codebook_size": 16,
                                   "preset": "smoke", "seed": 0},
                     "metrics": {"gfid": gfid}, "protocol": {}})
    frame = generation_frame(prior_rows(recs, tmp_path))
    assert sorted(zip(frame["Options"], frame["gfid"])) == [("beta=0.25", 100.0), ("beta=1.0", 200.0)]
