"""The worked examples of docs/architecture.md run as written: a dataset and a metric."""
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _example(heading: str) -> str:
    section = (REPO / "docs" / "architecture.md").read_text().split(heading, 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


CHECK_DATASET = """
import datasets
from PIL import Image
from pathlib import Path
root = Path({root!r}) / "mypngs"
root.mkdir(parents=True)
for k in range(40):
    Image.new("RGB", (20, 24), (k, 2 * k, 3 * k)).save(root / f"{{k:03d}}.png")
train = datasets.create("mypngs", "train", 16, root={root!r})
val = datasets.create("mypngs", "val", 16, root={root!r})
assert len(train) + len(val) == 40 and len(val) > 0, (len(train), len(val))
assert tuple(train[0].shape) == (3, 16, 16) and train.protocol["split_rule"].startswith("crc32")
print("ok")
"""

CHECK_METRIC = """
import torch
from bench.evaluation.metrics import registry
assert registry.spec("mae").label == "MAE" and registry.spec("mae").better == "lower"
assert "mae" in [m.key for m in registry.per_image_metrics()]
a = torch.zeros(2, 3, 4, 4, dtype=torch.uint8); b = a + 3
assert registry.spec("mae").fn(a, b).tolist() == [3.0, 3.0]
print("ok")
"""


def _run(code: str) -> None:
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-3000:]


def test_dataset_example(tmp_path):
    _run(_example("### a dataset") + CHECK_DATASET.format(root=str(tmp_path)))


def test_metric_example():
    _run(_example("### a metric") + CHECK_METRIC)
