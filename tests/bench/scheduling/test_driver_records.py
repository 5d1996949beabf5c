"""Records the driver writes or makes itself: a worker's record copied into the driver's folder
(only when it differs), and the failed record of a run that could not record itself."""
from __future__ import annotations

import json

import pytest

from bench.core import run_folder
from bench.evaluation.metrics import keys
from bench.runs.config import RunConfig
from bench.scheduling.driver_records import failed_record, persist
from bench.scheduling.plan import plan_cells
from tests.bench.scheduling import tiny


@pytest.fixture(scope="module", autouse=True)
def _test_registrations():
    with tiny.registered():
        yield


def test_driver_writes_missing_records_and_leaves_identical_ones(tmp_path):
    rec = {"run_id": "r1", "status": "finished", "metrics": {"psnr": 1.5}, "config": {"ch_mult": (1, 2)},
           "placement": {"node_id": "n"}, "skipped": False}
    persist(rec, tmp_path)  # a node with its own disk wrote it there, not here
    path = run_folder.runs_dir(tmp_path) / "r1" / run_folder.RECORD
    stored = json.loads(path.read_text())
    assert stored["config"]["ch_mult"] == [1, 2] and "placement" not in stored and "skipped" not in stored
    before = path.stat().st_mtime_ns
    persist(rec, tmp_path)  # shared folder: the worker's file is already this record
    assert path.stat().st_mtime_ns == before
    persist({**rec, "status": "failed"}, tmp_path)
    assert json.loads(path.read_text())["status"] == "failed"


def test_failed_record_has_the_finished_shape():
    [cell] = plan_cells([RunConfig(method="vqgan", dataset=tiny.DATASET, codebook_size=8, preset=tiny.PRESET)])
    rec = failed_record(cell, "WorkerCrashedError: gone")
    assert rec["status"] == "failed" and rec["run_id"] == cell.run_id and rec["error"] == "WorkerCrashedError: gone"
    assert set(rec["metrics"]) == set(keys.RECORD_METRICS) and all(v is None for v in rec["metrics"].values())
    assert rec["config"] == cell.run.to_dict()


def test_failed_record_of_a_released_evaluation_is_marked_released():
    """A released checkpoint's evaluation whose worker died gets the driver's failed record; it must
    still say `source: released` (and which file), or the tables would pool it with trained runs."""
    from bench.released.job import ReleasedEval

    description = {"kind": "taming", "method": "vqgan", "codebook_size": 16, "embed_dim": 8, "resolution": 16,
                   "sha256": "ab" * 32, "path": "/ckpt/last.ckpt", "files": {"checkpoint": {"sha256": "ab" * 32}},
                   "model": {"resolution": 16, "ch": 32, "ch_mult": [1, 2]}}
    [cell] = plan_cells([ReleasedEval(kind="taming", path="/ckpt/last.ckpt", description=description,
                                      dataset="photos")])
    rec = failed_record(cell, "WorkerCrashedError: gone")
    assert rec["status"] == "failed" and rec["run_id"].startswith("released-taming-vqgan-")
    assert rec["source"] == "released"
    assert rec["checkpoint"] == {"kind": "taming", "path": "/ckpt/last.ckpt", "sha256": "ab" * 32}
    trained = plan_cells([RunConfig(method="vqgan", dataset=tiny.DATASET, codebook_size=8, preset=tiny.PRESET)])
    assert "source" not in failed_record(trained[0], "WorkerCrashedError: gone")


def test_a_failed_record_the_driver_makes_keeps_the_earlier_failures_it_replaces(tmp_path):
    [cell] = plan_cells([RunConfig(method="vqgan", dataset=tiny.DATASET, codebook_size=8, preset=tiny.PRESET)])
    path = run_folder.runs_dir(tmp_path) / cell.run_id / run_folder.RECORD
    persist(failed_record(cell, "ValueError: first"), tmp_path)
    assert json.loads(path.read_text())["resumed_after_failure"] is None  # nothing failed before
    persist(failed_record(cell, "RayTaskError: second"), tmp_path)  # the retry's worker raised: the driver records it
    persist(failed_record(cell, "RayTaskError: third"), tmp_path)
    stored = json.loads(path.read_text())
    assert stored["error"] == "RayTaskError: third"
    assert stored["resumed_after_failure"] == ["ValueError: first", "RayTaskError: second"]
