"""FID reference statistics made on a GPU and on the CPU never mix: the device type and the precision
are part of the cache key, CPU entries keep the name they always had (so existing ones stay usable),
and an entry whose record names another device is recomputed. The GPU is mocked: an extractor that
says "cuda" and computes on the CPU."""
import json

import numpy as np
import pytest
import torch
from torch import nn

from bench.evaluation import precision
from bench.evaluation.metrics import fid, fid_reference, fid_weights

PROTOCOL = {"dataset": "photos", "split": "val", "resolution": 8}


class _MeanColour(nn.Module):
    def forward(self, x):
        f = x.float().mean(dim=(2, 3))
        return (torch.cat([f, f.pow(2) / 255, x.float().std(dim=(2, 3))], 1),)


def _extractor(tmp_path, device: str) -> fid.Extractor:
    return fid.Extractor(_MeanColour(), fid_weights.InceptionWeights(tmp_path / "none.pth", "fake", {}),
                         torch.device(device))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VQBENCH_CACHE", str(tmp_path / "cache"))
    # Features of a "cuda" extractor are computed on the CPU: only the key sees the device type.
    monkeypatch.setattr(fid, "batch_features", lambda images, ext: ext.model(images)[0].float().numpy())
    return tmp_path / "cache" / "fid" / "reference"


def _images(n=20, seed=0):
    return torch.randint(0, 256, (n, 3, 8, 8), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_the_key_names_the_device_and_precision_except_on_the_cpu():
    cpu = fid_reference.reference_key(PROTOCOL, 20, "x")
    assert cpu == fid_reference.reference_key(PROTOCOL, 20, "x", "cpu") == "photos__val__8px__n20__x"
    assert fid_reference.reference_key(PROTOCOL, 20, "x", "cuda") == f"{cpu}__cuda-{precision.TAG}"


def test_a_cuda_entry_is_not_used_by_a_cpu_evaluation(cache, tmp_path):
    x = _images()
    made_on_gpu = fid_reference.reference_statistics(x, PROTOCOL, extractor=_extractor(tmp_path, "cuda"))
    assert made_on_gpu.path.name.endswith("__cuda-fp32.npz") and made_on_gpu.info["device"] == "cuda"
    on_cpu = fid_reference.reference_statistics(x, PROTOCOL, extractor=_extractor(tmp_path, "cpu"))
    assert not on_cpu.cached and on_cpu.path != made_on_gpu.path
    assert on_cpu.info["device"] == "cpu" and on_cpu.info["precision"] == precision.TAG
    assert fid_reference.reference_statistics(x, PROTOCOL, extractor=_extractor(tmp_path, "cuda")).cached
    assert fid_reference.reference_statistics(x, PROTOCOL, extractor=_extractor(tmp_path, "cpu")).cached
    assert len(list(cache.glob("*.npz"))) == 2


def _rewrite_meta(path, **changes):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = {**json.loads(str(arrays["meta"])), **changes}
    for key in [k for k, v in changes.items() if v is None]:
        meta.pop(key)
    arrays["meta"] = np.array(json.dumps(meta))
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_a_cuda_entry_under_the_cpu_name_is_recomputed(cache, tmp_path):
    x = _images()
    ref = fid_reference.reference_statistics(x, PROTOCOL, extractor=_extractor(tmp_path, "cpu"))
    _rewrite_meta(ref.path, device="cuda")  # as if a GPU had written it there
    again = fid_reference.reference_statistics(x, PROTOCOL, extractor=_extractor(tmp_path, "cpu"))
    assert not again.cached and again.info["device"] == "cpu"


def test_an_entry_from_before_the_device_key_stays_usable_on_the_cpu(cache, tmp_path):
    x = _images()
    ref = fid_reference.reference_statistics(x, PROTOCOL, extractor=_extractor(tmp_path, "cpu"))
    _rewrite_meta(ref.path, device=None, precision=None)  # what the cache held before this key
    old = fid_reference.reference_statistics(x, PROTOCOL, extractor=_extractor(tmp_path, "cpu"))
    assert old.cached and "device" not in old.info
    np.testing.assert_array_equal(old.mu, ref.mu)
