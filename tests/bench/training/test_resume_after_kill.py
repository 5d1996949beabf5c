"""A run killed with SIGKILL after a checkpoint resumes and finishes with the right number of steps."""
import subprocess
import sys
from pathlib import Path

import pytest

from bench.core import run_folder
from bench.core.processes import kill_once_file_exists
from bench.runs import records
from bench.runs.config import RunConfig, resolve
from bench.runs.runner import run_one

REPO = Path(__file__).resolve().parents[3]
STEPS = 400


@pytest.mark.slow  # ~70 s on 2 cores; the default run kills runs at random moments (tests/faults/test_run_faults.py)
def test_killed_run_resumes(tmp_path):
    code = (
        "from bench.runs.runner import run_one; from bench.runs.config import RunConfig; "
        f"run_one(RunConfig(method='vqgan', preset='smoke', codebook_size=16, steps={STEPS}), {str(tmp_path)!r}, progress=False)"
    )
    cfg = RunConfig(method="vqgan", preset="smoke", codebook_size=16, steps=STEPS)
    run_dir = run_folder.runs_dir(tmp_path) / resolve(cfg).run_id
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    kill_once_file_exists(proc, run_dir / run_folder.CHECKPOINT, timeout_s=240)
    assert records.read_record(run_dir) is None
    rec = run_one(cfg, tmp_path, progress=False)
    assert rec["status"] == "finished"
    assert 0 < rec["resumed_from"] < STEPS and rec["steps_done"] == STEPS
