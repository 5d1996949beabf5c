"""bench/gpu_check.sh: its syntax, and its path on a machine without a GPU in quick mode: it must say
so in its summary, record the environment and exit 0, quickly. The GPU is hidden (an nvidia-smi that
lists nothing first on PATH, no CUDA device for torch), so the test means the same on a GPU machine."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "bench" / "gpu_check.sh"


def test_gpu_check_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_make_target_runs_the_script():
    makefile = (ROOT / "Makefile").read_text()
    assert "gpu-check:" in makefile and "bench/gpu_check.sh" in makefile


def test_without_a_gpu_the_quick_check_says_so(tmp_path):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "nvidia-smi").write_text("#!/bin/sh\nexit 9\n")  # as on a machine whose driver finds no GPU
    (fake_bin / "nvidia-smi").chmod(0o755)
    env = {**os.environ, "OUT": str(tmp_path / "check"), "GPU_CHECK_QUICK": "1", "PYTHON": sys.executable,
           "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30,
                          check=False)
    assert done.returncode == 0, done.stderr
    summary = (tmp_path / "check" / "summary.txt").read_text()
    assert "no GPU found" in summary and "quick mode" in summary and "done in" in summary
    environment = (tmp_path / "check" / "environment.txt").read_text()
    assert "nvidia-smi GPUs: 0" in environment and "available False" in environment
    assert not (tmp_path / "check" / "short_run.csv").exists()  # quick mode ran no fallback
