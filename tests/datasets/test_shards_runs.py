"""The same 64 images as an image folder, as two WebDataset tar shards and as a parquet file give
three smoke runs with equal metrics, with and without `--dataset-cache`; missing or empty shards exit 2
with one line before any run folder exists."""
from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from bench.cli.main import main
from bench.evaluation import evaluator
from bench.runs import config, runner

from .shard_trees import three_sources, write_tar

FAST = ["--methods", "vqgan", "--preset", "smoke", "--steps", "2", "--codebook-sizes", "16", "--no-progress", "--no-ray"]


@pytest.fixture(autouse=True)
def _fast(tmp_path, monkeypatch):
    """Own cache folder; no LPIPS/rFID (Inception is minutes on 2 CPU cores; tested in tests/bench)."""
    monkeypatch.setenv("VQBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(runner, "evaluate", functools.partial(evaluator.evaluate, perceptual=False))


def _record(out: Path) -> dict:
    (path,) = sorted((out / "runs").glob("*/record.json"))
    return json.loads(path.read_text())


def test_folder_tar_and_parquet_give_equal_runs(tmp_path):
    sources = three_sources(tmp_path / "data")
    metrics, protocols = {}, {}
    for source, name in sources.items():
        for cache in (False, True):
            out = tmp_path / f"out-{source}-{cache}"
            if (source, cache) == ("webdataset", True):  # one through the command line: the pattern as typed
                assert main([*FAST, "--datasets", name, "--out", str(out), "--dataset-cache"]) == 0
                rec = _record(out)
                assert rec["config"]["dataset"] == name
                assert rec["run_id"].startswith("vqgan-webdataset_tars_shard_0..1_.tar-K16-s0-")
            else:
                cfg = config.RunConfig(method="vqgan", dataset=name, codebook_size=16, preset="smoke", steps=2,
                                       dataset_cache=cache)
                rec = runner.run_one(cfg, out=out, progress=False)
            assert rec["status"] == "finished", rec.get("error")
            assert ("decoded_cache" in rec["protocol"]) is cache
            metrics[source, cache] = rec["metrics"]
            protocols[source, cache] = rec["protocol"]
    first = metrics["imagefolder", False]
    assert first and all(v == first for v in metrics.values()), metrics
    for source in sources:  # the same split: 64 images, hashed by name alike
        p = protocols[source, False]
        assert p["layout"] == source and p["split_size"] == protocols["imagefolder", False]["split_size"]
    assert protocols["webdataset", False]["shards"] == 2 and protocols["parquet", False]["shards"] == 1


@pytest.mark.parametrize("make_bad, expected", [
    (lambda root: f"webdataset:{root}/missing-{{0..1}}.tar", "no shard matches"),
    (lambda root: f"parquet:{root}/nothing_here", "no shard matches"),
    (lambda root: f"webdataset:{write_tar(root / 'empty.tar', {'readme.txt': b'hi'})}", "hold no images"),
    (lambda root: f"webdataset:{root}/{{0..1}}.tar" if write_tar(root / "0.tar", {}) else "", "1 of the 2 shards"),
    (lambda root: f"parquet:{(root / 'x.parquet').write_bytes(b'not parquet') and root / 'x.parquet'}", "as parquet"),
])
def test_bad_shards_exit_2_with_one_line_and_no_run_folder(tmp_path, capsys, make_bad, expected):
    root = tmp_path / "data"
    root.mkdir()
    name = make_bad(root)
    out = tmp_path / "out"
    assert main([*FAST, "--datasets", name, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1, err
    assert not (out / "runs").exists() or not any((out / "runs").iterdir())
