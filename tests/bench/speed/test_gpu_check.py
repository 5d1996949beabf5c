"""bench/gpu_check.sh, the GPU check, driven on the CPU with a stand-in for its measuring module (named by
GPU_CHECK_MODULE; the real one is bench.speed.gpu) and a small bundle made here: what it writes, that it
never reaches a network or makes a venv, that a killed or timed-out step leaves its finished rows, and
that a GPU torch cannot use stops it at once with the versions."""
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from bench.gpu.bundle import write_manifest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "bench" / "gpu_check.sh"
SECTIONS = ("peak", "steps", "eval", "search", "resume")

# The stand-in for `python -m bench.speed.gpu SECTION --summary PATH --device D [--quick]`: a heading and
# one row (flushed), then FAKE_SLEEP_<SECTION> seconds, then a second row. It imports the module that the
# bundle's wheel carries, so a row proves the wheels were installed where the script says.
STAND_IN = '''
import argparse, os, sys, time
p = argparse.ArgumentParser()
p.add_argument("section"); p.add_argument("--summary", required=True); p.add_argument("--device", required=True)
p.add_argument("--quick", action="store_true")
a = p.parse_args()
import vqbench_probe
with open(a.summary, "a") as f:
    f.write(f"\\n## {a.section}\\n\\n| row | device | quick | probe |\\n| --- | --- | --- | --- |\\n")
    f.write(f"| {a.section} first | {a.device} | {a.quick} | {vqbench_probe.VALUE} |\\n")
    f.flush()
    sleep = float(os.environ.get("FAKE_SLEEP_" + a.section.upper(), "0"))
    if sleep:
        open(os.environ["FAKE_PID_FILE"], "w").write(str(os.getpid()))
        time.sleep(sleep)
    f.write(f"| {a.section} second | {a.device} | {a.quick} | {vqbench_probe.VALUE} |\\n")
sys.exit(int(os.environ.get("FAKE_EXIT_" + a.section.upper(), "0")))
'''


def _probe_wheel(folder: Path) -> Path:
    """A pure-Python wheel holding the module `vqbench_probe` (VALUE = 'probe-ok')."""
    path = folder / "vqbench_probe-1.0-py3-none-any.whl"
    info = "vqbench_probe-1.0.dist-info"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("vqbench_probe.py", "VALUE = 'probe-ok'\n")
        z.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: vqbench-probe\nVersion: 1.0\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return path


# A stand-in torch for the runs that test the script's logic, not the machine: importing the real one takes
# seconds on a loaded CI machine, and the versions it reports are then fixed.
FAKE_TORCH = """
__version__ = "2.11.0+fake"
class version: cuda = "13.0"
class backends:
    class cudnn:
        is_available = staticmethod(lambda: False)
        version = staticmethod(lambda: None)
class cuda: is_available = staticmethod(lambda: False)
"""


@pytest.fixture
def check_env(tmp_path):
    return _check_env(tmp_path, fake_torch=True)


@pytest.fixture
def check_env_real_torch(tmp_path):
    return _check_env(tmp_path, fake_torch=False)


def _check_env(tmp_path: Path, fake_torch: bool):
    """(env, out folder, command log): a fake bundle (one wheel, one cache file, MANIFEST), the stand-in
    module, a python that logs every call, an nvidia-smi that lists nothing, and the GPU hidden; with
    fake_torch, a stand-in torch too."""
    bundle = tmp_path / "bundle"
    (bundle / "wheels").mkdir(parents=True)
    wheel = _probe_wheel(bundle / "wheels")
    (bundle / "cache" / "fid").mkdir(parents=True)
    (bundle / "cache" / "fid" / "seed.txt").write_text("seeded\n")
    write_manifest(bundle, {f"wheels/{wheel.name}": "the probe", "cache/fid/seed.txt": "a cache seed"}, "3.x")
    modules = tmp_path / "modules" / "fakecheck"
    modules.mkdir(parents=True)
    (modules / "__init__.py").write_text("")
    (modules / "__main__.py").write_text(STAND_IN)
    if fake_torch:
        (tmp_path / "modules" / "torch.py").write_text(FAKE_TORCH)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "python_calls.log"
    (bin_dir / "python-logged").write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {sys.executable} "$@"\n')
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\nexit 9\n")  # as on a machine whose driver finds no GPU
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": str(bin_dir / "python-logged"), "GPU_BUNDLE": str(bundle),
           "GPU_CHECK_SITE": str(tmp_path / "site"), "VQBENCH_CACHE": str(tmp_path / "cache"),
           "GPU_CHECK_MODULE": "fakecheck", "PYTHONPATH": str(tmp_path / "modules"),
           "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "CUDA_VISIBLE_DEVICES": "",
           "FAKE_PID_FILE": str(tmp_path / "pid")}
    return env, out, log


def _run(env, timeout=120, prefix=()):
    return subprocess.run([*prefix, "bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def _code_lines() -> list[str]:
    return [line for line in SCRIPT.read_text().splitlines() if not line.lstrip().startswith("#")]


def test_gpu_check_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_make_targets_run_the_script_and_build_the_bundle():
    makefile = (ROOT / "Makefile").read_text()
    assert "gpu-check:" in makefile and "bash bench/gpu_check.sh" in makefile
    assert "gpu-bundle:" in makefile and "-m bench.gpu.bundle --python-version $(PYVER)" in makefile
    assert "PYVER ?= 3.12" in makefile


def test_the_script_names_no_network_and_makes_no_venv():
    code = "\n".join(_code_lines())
    for forbidden in (r"-m\s+venv", r"virtualenv", r"https?://", r"\bcurl\b", r"\bwget\b", r"git\s+(clone|fetch|pull)",
                      r"pip\s+download", r"make\s+install"):
        assert not re.search(forbidden, code), forbidden
    installs = [line for line in re.split(r"(?<!\\)\n", code) if re.search(r"pip\s+install", line)]
    assert installs, "the script installs the bundle's wheels"
    for line in installs:
        assert "--no-index" in line and "--no-deps" in line and "--target" in line, line


def test_without_a_gpu_every_section_runs_in_cpu_mode_offline(check_env_real_torch):
    """The whole check with no network at all (a new network namespace, where this machine allows one):
    the wheels install from the bundle, the cache is seeded, every section runs with --device cpu --quick."""
    env, out, log = check_env_real_torch
    own = Path(env["VQBENCH_CACHE"]) / "own.txt"  # a cache of this machine's own is never overwritten
    own.parent.mkdir(parents=True)
    own.write_text("this machine's own\n")
    isolate = ("unshare", "-rn") if shutil.which("unshare") and subprocess.run(
        ["unshare", "-rn", "true"], capture_output=True, check=False).returncode == 0 else ()
    done = _run(env, prefix=isolate)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = (out / "summary.md").read_text()
    assert summary.startswith("# vqbench GPU check\n")
    for row in ("| GPU (nvidia-smi) | 0:", "| python |", "| torch |", "| mode | --device cpu --quick",
                "| bundle | CPython 3.x, 2 files", "| bundle install | rc=0"):
        assert row in summary, row
    for section in SECTIONS:
        assert f"| {section} first | cpu | True | probe-ok |" in summary
        assert f"| {section} second | cpu | True | probe-ok |" in summary
        assert re.search(rf"_{section}: done in \d+ s of \d+ s\._", summary)
    assert "every section done" in summary
    assert sorted(p.name for p in out.iterdir()) == ["log.txt", "summary.md"]
    assert (Path(env["VQBENCH_CACHE"]) / "fid" / "seed.txt").read_text() == "seeded\n"
    assert own.read_text() == "this machine's own\n"
    calls = log.read_text().splitlines()
    assert not any(re.search(r"-m\s+venv|virtualenv", c) for c in calls)
    pip_calls = [c for c in calls if re.search(r"-m pip\b", c)]
    assert len(pip_calls) == 1 and "--no-index" in pip_calls[0] and "--target" in pip_calls[0]


def test_killed_mid_step_the_finished_rows_stay(check_env):
    env, out, _ = check_env
    env = {**env, "FAKE_SLEEP_STEPS": "60"}
    proc = subprocess.Popen(["bash", str(SCRIPT)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    summary = out / "summary.md"
    pid_file = Path(env["FAKE_PID_FILE"])
    deadline = time.monotonic() + 90
    while not (pid_file.exists() and "| steps first |" in summary.read_text()):
        assert time.monotonic() < deadline and proc.poll() is None, "the steps section never started"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # to the script alone: it must pass the signal on to the step
    assert proc.wait(timeout=30) == 143
    text = summary.read_text()
    assert "| peak first |" in text and "| peak second |" in text and "_peak: done" in text
    assert "| steps first |" in text and "| steps second |" not in text
    assert "_Check interrupted during steps after" in text
    step_pid = int(pid_file.read_text())
    deadline = time.monotonic() + 15
    while _alive(step_pid):
        assert time.monotonic() < deadline, "the step outlived the check"
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())


def test_a_step_over_its_limit_is_cut_and_its_rows_stay(check_env):
    env, out, _ = check_env
    env = {**env, "GPU_CHECK_SECTIONS": "peak search", "GPU_CHECK_LIMIT_S": "3", "FAKE_SLEEP_PEAK": "120",
           "FAKE_EXIT_SEARCH": "5"}
    done = _run(env, timeout=60)
    assert done.returncode == 1
    text = (out / "summary.md").read_text()
    assert "| peak first |" in text and "| peak second |" not in text
    assert re.search(r"_peak: \*\*timed out\*\* \(rows above are those it finished\) in \d+ s of 3 s\._", text)
    assert "| search second |" in text and "_search: **failed, exit 5** (see log.txt)" in text
    assert "NOT every section done" in text


def test_a_spent_budget_skips_the_sections_left(check_env):
    env, out, _ = check_env
    done = _run({**env, "GPU_CHECK_BUDGET_S": "1"})
    assert done.returncode == 1
    text = (out / "summary.md").read_text()
    assert all(f"_{s}: skipped, the 1 s budget is spent._" in text for s in SECTIONS) and "| peak first |" not in text


def test_gpu_seen_but_torch_cannot_use_it_stops_at_once(check_env):
    env, out, _ = check_env
    fake = Path(env["PATH"].split(os.pathsep)[0]) / "nvidia-smi"
    fake.write_text('#!/bin/sh\ncase "$*" in\n  -L) echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)";;\n'
                    '  *driver_version*) echo "470.57.02";;\n  *name,memory*) echo "NVIDIA H100 80GB HBM3, 81559 MiB";;\n'
                    '  *) echo "NVIDIA-SMI 470.57.02";;\nesac\n')
    done = _run(env)
    assert done.returncode == 3
    assert "driver 470.57.02, torch 2.11.0+fake built for CUDA 13.0; stopping" in done.stdout
    summary = (out / "summary.md").read_text()
    assert "**Stopped: nvidia-smi lists 1 GPU(s) (driver 470.57.02)" in summary
    assert "| first |" not in summary and not Path(env["GPU_CHECK_SITE"]).exists()  # nothing installed, no section


def test_without_the_measuring_module_it_says_so(check_env):
    env, out, _ = check_env
    env = {**env, "GPU_CHECK_MODULE": "no_such_module_here"}
    done = _run(env)
    assert done.returncode == 4
    assert "**Stopped: no_such_module_here is not in this checkout; no section ran.**" in (out / "summary.md").read_text()


def test_without_a_bundle_it_says_how_to_make_one(check_env):
    env, out, _ = check_env
    env = {**env, "GPU_BUNDLE": str(Path(env["OUT"]).parent / "absent"), "GPU_CHECK_SECTIONS": "peak"}
    done = _run(env)
    summary = (out / "summary.md").read_text()
    assert "**none at" in summary and "make gpu-bundle" in summary
    assert done.returncode == 1  # the stand-in cannot import the bundle's module
