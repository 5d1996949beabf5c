"""Reference statistics are cached by (dataset, split, resolution, image count, feature extractor),
reused across runs, recomputed when the images behind a key change, and can be cleared. A stand-in
feature extractor keeps these tests fast; the real one is tested in test_fid.py."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from bench.evaluation.metrics import fid, fid_reference, fid_stream, fid_weights


class _MeanColour(nn.Module):
    def forward(self, x):
        f = x.float().mean(dim=(2, 3))
        return (torch.cat([f, f.pow(2) / 255, x.float().std(dim=(2, 3))], 1),)


@pytest.fixture
def fake(tmp_path):
    return fid.Extractor(_MeanColour(), fid_weights.InceptionWeights(tmp_path / "none.pth", "fake", {}),
                         torch.device("cpu"))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VQBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "fid" / "reference"


PROTOCOL = {"dataset": "photos", "split": "val", "resolution": 8, "preprocessing": "..."}


def _images(n, seed=0):
    return torch.randint(0, 256, (n, 3, 8, 8), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_reference_is_computed_once_and_reused(cache, fake):
    x = _images(20)
    first = fid_reference.reference_statistics(x, PROTOCOL, extractor=fake)
    assert not first.cached and first.path.parent == cache
    assert first.path.name == "photos__val__8px__n20__inception-v3-compat-2048-fake.npz"
    second = fid_reference.reference_statistics(x, PROTOCOL, extractor=fake)
    assert second.cached
    np.testing.assert_array_equal(first.mu, second.mu)
    np.testing.assert_array_equal(first.sigma, second.sigma)
    np.testing.assert_allclose(first.features, second.features, rtol=1e-6)
    mu, _ = fid.statistics(fid.inception_features(x, extractor=fake))
    np.testing.assert_allclose(second.mu, mu)
    assert second.info["protocol"] == {"dataset": "photos", "split": "val", "resolution": 8}


def test_key_parts_give_separate_entries(cache, fake):
    x = _images(20)
    fid_reference.reference_statistics(x, PROTOCOL, extractor=fake)
    fid_reference.reference_statistics(x[:10], PROTOCOL, extractor=fake)  # another image count
    fid_reference.reference_statistics(x, {**PROTOCOL, "split": "train"}, extractor=fake)
    fid_reference.reference_statistics(x, {**PROTOCOL, "dataset": "cub200"}, extractor=fake)
    assert len(list(cache.glob("*.npz"))) == 4


def test_changed_images_behind_the_same_key_are_recomputed(cache, fake):
    fid_reference.reference_statistics(_images(20, seed=0), PROTOCOL, extractor=fake)
    again = fid_reference.reference_statistics(_images(20, seed=1), PROTOCOL, extractor=fake)
    assert not again.cached
    assert fid_reference.reference_statistics(_images(20, seed=1), PROTOCOL, extractor=fake).cached


def test_a_corrupt_entry_is_recomputed(cache, fake):
    ref = fid_reference.reference_statistics(_images(20), PROTOCOL, extractor=fake)
    ref.path.write_bytes(b"not an npz")
    assert not fid_reference.reference_statistics(_images(20), PROTOCOL, extractor=fake).cached


def test_no_protocol_or_no_cache_computes_without_writing(cache, fake):
    ref = fid_reference.reference_statistics(_images(20), None, extractor=fake)
    assert not ref.cached and ref.path is None
    fid_reference.reference_statistics(_images(20), PROTOCOL, extractor=fake, use_cache=False)
    assert not cache.exists() or not list(cache.glob("*.npz"))
    with pytest.raises(ValueError, match="resolution"):
        fid_reference.reference_key({"dataset": "photos", "split": "val"}, 20, "x")


def test_clear_cache(cache, fake):
    for dataset in ("photos", "cub200"):
        fid_reference.reference_statistics(_images(20), {**PROTOCOL, "dataset": dataset}, extractor=fake)
    assert fid_reference.clear_cache("photos") == 1
    assert [p.name.split("__")[0] for p in cache.glob("*.npz")] == ["cub200"]
    assert fid_reference.clear_cache() == 1
    assert not cache.exists()
    assert fid_reference.clear_cache() == 0


def test_clear_cache_from_the_command_line(cache, fake, tmp_path):
    fid_reference.reference_statistics(_images(20), PROTOCOL, extractor=fake)
    out = subprocess.run([sys.executable, "-m", "bench.metrics", "--clear-cache", "photos"], check=False,
                         capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"removed": 1}


def test_compute_reuses_the_cache_and_records_the_protocol(cache, fake, monkeypatch):
    monkeypatch.setattr(fid, "get_extractor", lambda device="cpu": fake)
    x = _images(12)
    y = (x.int() + 9).clamp(0, 255).to(torch.uint8)
    m1, p1 = fid_stream.compute(x, y, PROTOCOL)
    m2, p2 = fid_stream.compute(x, y, PROTOCOL)
    assert not p1["reference_cached"] and p2["reference_cached"]
    assert m1 == m2 and m1["fid"] > 0
    assert p1["n_images"] == 12 and p1["rank_deficient"]
    assert p1["weights"] == "fake" and "inception-v3-compat" in p1["feature_extractor"]
    assert p1["kid"]["subset_size"] == 12
