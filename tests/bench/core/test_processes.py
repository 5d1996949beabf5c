"""Killing a child once a file appears: the tool of the resume tests and the GPU check's resume section."""
import subprocess
import sys

import pytest

from bench.core.processes import EndedFirst, kill_once_file_exists, wait_for_file


def _child(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code])


def test_the_child_is_killed_once_the_file_exists(tmp_path):
    flag = tmp_path / "flag"
    proc = _child(f"import pathlib, time; pathlib.Path({str(flag)!r}).write_text('x'); time.sleep(60)")
    kill_once_file_exists(proc, flag, timeout_s=60)
    assert flag.exists() and proc.returncode == -9


def test_a_child_that_ends_first_is_named(tmp_path):
    proc = _child("raise SystemExit(3)")
    with pytest.raises(EndedFirst, match="exit 3"):
        wait_for_file(proc, tmp_path / "never", timeout_s=60)


def test_a_timeout_still_kills_the_child(tmp_path):
    proc = _child("import time; time.sleep(60)")
    with pytest.raises(TimeoutError, match="never"):
        kill_once_file_exists(proc, tmp_path / "never", timeout_s=0.5)
    assert proc.returncode == -9
