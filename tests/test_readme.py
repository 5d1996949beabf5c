"""The README's "Adding a method" example works as written: it registers, passes the contract
checks and trains."""
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _example() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("## Adding a method", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


CHECK = """
import torch, methods
from bench.runs.runner import run_one
from bench.runs.config import RunConfig
assert "my-vq" in methods.available()
q = methods.create("my-vq", 32, 8).eval()
z = torch.randn(2, 8, 4, 4)
out = q(z)
assert torch.allclose(q.decode_indices(out.indices), out.z_q, atol=1e-6)
rec = run_one(RunConfig(method="my-vq", preset="smoke", codebook_size=16, steps=3), {out!r}, progress=False)
assert rec["status"] == "finished", rec["error"]
print("ok")
"""


def test_readme_method_example(tmp_path):
    code = _example() + CHECK.format(out=str(tmp_path))
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-3000:]
