"""Preparation creates exactly the dataset splits a run reads, once per distinct thing, and a step
that fails is reported, not raised."""
from __future__ import annotations

import pytest

from bench.runs import runner
from bench.runs.config import RunConfig
from bench.scheduling.plan import plan_cells
from bench.scheduling.prepare import preparation_steps, prepare_here
from tests.bench.scheduling import tiny


@pytest.fixture(scope="module", autouse=True)
def _test_registrations():
    with tiny.registered():
        yield


def test_preparation_creates_the_splits_a_run_reads(monkeypatch, tmp_path):
    import datasets

    calls = []
    real = datasets.create

    def spy(name, split, resolution, root=None, **options):
        calls.append((name, split, resolution, root, options))
        return real(name, split, resolution, root, **options)

    monkeypatch.setattr(datasets, "create", spy)
    config = RunConfig(method="vqgan", dataset=tiny.DATASET, codebook_size=8, preset=tiny.PRESET, seed=3)
    with tiny.like_a_worker():
        assert runner.run_one(config, tmp_path, progress=False)["status"] == "finished"
    by_run = list(calls)
    calls.clear()
    [cell] = plan_cells([config])
    assert prepare_here([cell]) == []
    assert calls == by_run and len(by_run) == 2


def test_one_step_per_distinct_split_and_method():
    configs = [RunConfig(method="vqgan", dataset=tiny.DATASET, codebook_size=k, seed=s, preset=tiny.PRESET)
               for k in (8, 16) for s in (0, 1)]
    labels = [label for label, _ in preparation_steps(plan_cells(configs))]
    # the seeds share their splits and their method caches; the two codebook sizes do not
    assert sorted(labels) == sorted([f"dataset {tiny.DATASET} train 16px", f"dataset {tiny.DATASET} val 16px",
                                     "method vqgan K=8", "method vqgan K=16"])


def test_preparation_problems_are_reported_not_raised(monkeypatch):
    import datasets

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(datasets, "create", broken)
    cells = plan_cells([RunConfig(method="vqgan", dataset=tiny.DATASET, preset=tiny.PRESET)])
    problems = prepare_here(cells)
    assert len(problems) == 2 and all("OSError: disk full" in p for p in problems)
