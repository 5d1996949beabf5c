"""Planning: one cell per distinct run in first-seen order, finished runs set aside with their
records (unless forced), and records back at the caller's positions."""
from __future__ import annotations

import pytest

from bench.core import run_folder
from bench.core.atomic import write_json_atomic
from bench.runs.config import RunConfig
from bench.scheduling.plan import in_caller_order, plan_cells, skip_finished
from tests.bench.scheduling import tiny


@pytest.fixture(scope="module", autouse=True)
def _test_registrations():
    with tiny.registered():
        yield


def _cfg(seed: int) -> RunConfig:
    return RunConfig(method="vqgan", dataset=tiny.DATASET, codebook_size=8, preset=tiny.PRESET, seed=seed)


def test_identical_configs_share_a_cell_in_first_seen_order():
    cells = plan_cells([_cfg(2), _cfg(1), _cfg(2)])
    assert [c.indices for c in cells] == [[0, 2], [1]]
    assert cells[0].run_id != cells[1].run_id and cells[0].config == _cfg(2) and cells[0].run.seed == 2


def test_finished_runs_are_set_aside_unless_forced(tmp_path):
    cells = plan_cells([_cfg(0), _cfg(1), _cfg(2)])
    for cell, status in ((cells[0], "finished"), (cells[1], "failed")):
        write_json_atomic(run_folder.run_dir(tmp_path, cell.run_id) / run_folder.RECORD,
                          {"run_id": cell.run_id, "status": status})
    todo = skip_finished(cells, tmp_path, force=False)
    assert todo == cells[1:]  # a failed run is run again (run_one resumes it from its checkpoint)
    assert cells[0].record == {"run_id": cells[0].run_id, "status": "finished", "skipped": True}
    assert skip_finished(cells, tmp_path, force=True) == cells and cells[0].record is None


def test_records_come_back_in_the_callers_order_without_the_runs_that_never_ended():
    cells = plan_cells([_cfg(0), _cfg(1), _cfg(0), _cfg(3)])
    cells[0].record, cells[1].record = {"n": 0}, {"n": 1}
    recs = in_caller_order(4, cells)
    assert recs == [{"n": 0}, {"n": 1}, {"n": 0}] and recs[2] is recs[0]
