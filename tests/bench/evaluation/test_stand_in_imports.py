"""ST-LPIPS loads without IPython and leaves nothing behind in sys.modules: plots, the report and
Ray's progress code then run in the same process, with and without IPython importable.

Each case runs in a fresh interpreter, because stlpips_pytorch is imported once per process."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    mode, out = sys.argv[1], Path(sys.argv[2])
    if mode == "without":
        class NoIPython:  # `import IPython` fails as if it were not installed, and sys.modules stays clean
            def find_spec(self, name, path=None, target=None):
                if name == "IPython" or name.startswith("IPython."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        sys.meta_path.insert(0, NoIPython())
    before = sys.modules.get("IPython", "absent")
    from bench.evaluation.metrics import lpips
    net = lpips.load_network("alex")
    assert net.name == "st-lpips-alex", net.name
    after = sys.modules.get("IPython", "absent")
    # untouched, or the real package that stlpips imported: never a stand-in without a file
    assert after is before or getattr(after, "__file__", None), f"IPython stand-in left: {after!r}"
    if mode == "without":
        assert after == "absent", after
    assert "torchsummary" not in sys.modules or hasattr(sys.modules["torchsummary"], "__file__")
    from tests.bench.reporting.results_fixture import write_fixture
    write_fixture(out)
    from bench.reporting import report, tables
    page = report.write_report(out, built=tables.build(out))
    assert page.is_file() and page.stat().st_size > 1000
    from ray.experimental.tqdm_ray import tqdm  # reads IPython.get_ipython when IPython is in sys.modules
    from ray.widgets.util import in_notebook
    assert in_notebook() is False
    print("ok", mode)
""")

FAKE_IPYTHON = "version_info = (9, 0, 0)\n\ndef get_ipython():\n    return None\n\ndef embed(*a, **k):\n    pass\n"


@pytest.mark.parametrize("mode", ["without", "with"])
def test_plots_report_and_ray_after_st_lpips(tmp_path: Path, mode: str) -> None:
    env = {"PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    if mode == "with":
        # a minimal importable IPython, so the case holds whether or not the real one is installed
        (tmp_path / "fakes" / "IPython").mkdir(parents=True)
        (tmp_path / "fakes" / "IPython" / "__init__.py").write_text(FAKE_IPYTHON)
        env["PYTHONPATH"] += f":{tmp_path / 'fakes'}"
    import os

    proc = subprocess.run([sys.executable, "-c", SCRIPT, mode, str(tmp_path / "out")], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"ok {mode}" in proc.stdout
