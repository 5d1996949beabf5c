"""The --until-resolved loop with fake runs (records with chosen per-seed PSNR, no training): it adds
seeds above the grid's, one look at a time, to the cells of the open comparison through the batch
runner it is given, reuses finished runs, records what it added, and ends resolved or with the budget
line; the tables rebuilt from disk decide by its design and their notes name it. The CLI refuses bad
flags before any run."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.cli import main as cli
from bench.reporting import conclusion, sequential, tables
from bench.reporting.summary import build
from bench.runs.config import RunConfig
from bench.scheduling import until_resolved
from tests.bench.reporting.fake_runs import write_run


class FakeRuns:
    """Runs a batch by writing a record per config: PSNR = 20 + `effect` for fsq + per-seed noise."""

    def __init__(self, out: Path, effect: float, seed_sd: float, draw: int = 0):
        self.out, self.effect, self.seed_sd, self.draw = out, effect, seed_sd, draw
        self.batches: list[list[tuple[str, int]]] = []

    def __call__(self, batch: list[RunConfig]) -> list[dict]:
        self.batches.append([(c.method, c.seed) for c in batch])
        recs = []
        for c in batch:
            folder = self.out / "runs" / f"photos-{c.method}-k16-s{c.seed}"
            if folder.exists():
                recs.append({"run_id": folder.name, "status": "finished", "skipped": True,
                             "config": {"seed": c.seed}})
                continue
            rng = np.random.default_rng([self.draw, c.seed, c.method == "fsq"])
            value = 20.0 + (self.effect if c.method == "fsq" else 0.0) + rng.normal(0.0, self.seed_sd)
            recs.append(write_run(self.out, c.method, c.seed, {"psnr": value + rng.normal(0.0, 0.1, 20)}))
        return recs


def _configs(seeds=(0, 1, 2)) -> list[RunConfig]:
    return [RunConfig(method=m, dataset="photos", codebook_size=16, seed=s, preset="smoke")
            for m in ("vqgan", "fsq") for s in seeds]


def _loop(out: Path, runs: FakeRuns, max_seeds: int, seeds=(0, 1, 2)) -> until_resolved.Outcome:
    configs = _configs(seeds)
    runs(configs)  # the grid's own seeds
    said: list[str] = []
    outcome = until_resolved.run(configs, out, until_resolved.plan(seeds, max_seeds), ["psnr"], runs,
                                 lambda: build(out, metrics=["psnr"]), said.append)
    assert said == [outcome.lines[0], *outcome.lines[1:]]
    return outcome


def test_a_true_difference_is_resolved_by_adding_seeds(tmp_path):
    runs = FakeRuns(tmp_path, effect=1.0, seed_sd=0.4)
    outcome = _loop(tmp_path, runs, max_seeds=10)
    assert outcome.resolved and outcome.lines[-1].startswith("until-resolved: resolved: every comparison of PSNR")
    added = [s for b in outcome.state.batches for s in b["seeds"]]
    assert added and added == list(range(3, 3 + len(added)))  # one seed per look, above the grid's
    # every batch asks for the grid's seeds again: finished runs are reused, never rerun
    assert all(sorted(s for m, s in b if m == "fsq") == list(range(len(b) // 2)) for b in runs.batches[1:])
    assert len(outcome.records) == 2 * len(added)
    saved = sequential.load(tmp_path)
    assert saved is not None and saved.outcome == outcome.lines[-1] and saved.metrics == ["psnr"]
    summary = build(tmp_path, metrics=["psnr"])
    comp = summary.comparisons.iloc[0]
    assert comp["resolved"] and comp["look"] == 1 + len(added) and comp["n"] == 3 + len(added)
    said = conclusion.lines(summary)[0]
    assert "fsq is better than vqgan (resolved: group-sequential paired t-test, look" in said
    notes = tables.render(summary, "md")
    assert "Decided by --until-resolved (until_resolved.json)" in notes and sequential.PROCEDURE in notes
    assert "8 at most" in notes and f"seeds added by the loop: {', '.join(map(str, added))}" in notes


def test_no_difference_ends_with_the_budget_line(tmp_path):
    runs = FakeRuns(tmp_path, effect=0.0, seed_sd=1.0, draw=2)
    outcome = _loop(tmp_path, runs, max_seeds=5)
    assert not outcome.resolved
    last = outcome.lines[-1]
    assert last.startswith("until-resolved: budget spent: --max-seeds 5 reached with 1 comparison unresolved: "
                           "PSNR on photos")
    assert "look 3 of 3" in last and "seeds would resolve a difference of" in last
    assert [b["seeds"] for b in outcome.state.batches] == [[3], [4]]
    summary = build(tmp_path, metrics=["psnr"])
    assert not summary.comparisons.iloc[0]["resolved"] and summary.comparisons.iloc[0]["n"] == 5


def test_one_seed_grids_go_to_the_first_look_at_three_seeds(tmp_path):
    runs = FakeRuns(tmp_path, effect=0.0, seed_sd=1.0, draw=3)
    outcome = _loop(tmp_path, runs, max_seeds=4, seeds=(0,))
    assert [b["seeds"] for b in outcome.state.batches] == [[1, 2], [3]]
    assert outcome.state.design.looks == [3, 4]


@pytest.mark.parametrize("argv, message", [
    (["--max-seeds", "5"], "--max-seeds is the budget of --until-resolved"),
    (["--until-resolved", "--max-seeds", "3", "--seeds", "0,1,2"], "--max-seeds 3 leaves no seed to add"),
    (["--until-resolved", "--max-seeds", "2"], "a paired test across seeds needs at least 3 seeds"),
    (["--until-resolved", "perplexity"], "has no better direction"),
    (["--until-resolved", "psnrr"], "not a registered metric"),
])
def test_bad_flags_stop_before_any_run(tmp_path, capsys, argv, message):
    out = tmp_path / "res"
    assert cli.main(["--methods", "vqgan,fsq", "--preset", "smoke", "--no-ray", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not out.exists()


def test_help_shows_both_flags(capsys):
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "--until-resolved [METRICS]" in text and "--max-seeds N" in text


def test_the_cli_drives_the_loop_through_the_grid_runner(tmp_path, monkeypatch, capsys):
    from bench.generation import schedule

    out = tmp_path / "res"
    runs = FakeRuns(out, effect=0.0, seed_sd=1.0, draw=4)
    seen: list[dict] = []

    def fake_grid(configs, out_, prior, **kwargs):  # the CLI's one grid runner, for the grid and every batch
        seen.append(kwargs)
        return runs(list(configs))

    monkeypatch.setattr(schedule, "run_grid_with_priors", fake_grid)
    monkeypatch.setattr("bench.reporting.report.write_report", lambda *a, **k: out / "report.html")
    code = cli.main(["--methods", "vqgan,fsq", "--codebook-sizes", "16", "--seeds", "0,1,2", "--preset", "smoke",
                     "--no-ray", "--out", str(out), "--until-resolved", "psnr", "--max-seeds", "4"])
    printed = capsys.readouterr().out
    assert code == 0 and len(runs.batches) == 2 and {k["backend"] for k in seen} == {"local"}
    assert "until-resolved: budget spent: --max-seeds 4" in printed or "until-resolved: resolved" in printed
    assert "Decided by --until-resolved" in (out / "tables" / "results.md").read_text()
