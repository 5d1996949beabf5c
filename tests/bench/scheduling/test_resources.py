"""What a run asks for: memory sizes, resource requests (GPUs by default where the cluster has them)
and how many runs fit on a set of nodes."""
from __future__ import annotations

import pytest

from bench.core.errors import UserError
from bench.runs.config import RunConfig
from bench.scheduling.resources import Resources, capacity, parse_memory


@pytest.mark.parametrize("text, expected", [("8G", 8 * 2**30), ("512MiB", 512 * 2**20), ("1.5g", int(1.5 * 2**30)),
                                            ("1000", 1000), (2048, 2048), ("2 GB", 2 * 2**30)])
def test_parse_memory(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["", "eight", "8Q", "-1G", "0"])
def test_parse_memory_rejects(text):
    with pytest.raises(UserError):
        parse_memory(text)


def test_resources_validate_and_default_to_gpus_when_the_cluster_has_them():
    for bad in (dict(cpus=0), dict(gpus=-1), dict(gpus=1.5), dict(custom={"x": 0})):
        with pytest.raises(UserError):
            Resources(**bad)
    res = Resources(cpus=2, memory=4 * 2**30, custom={"A100": 1})
    cfg = RunConfig(method="vqgan")
    assert res.request(cfg, cluster_gpus=0) == {"CPU": 2.0, "A100": 1.0, "memory": 4.0 * 2**30}
    assert res.request(cfg, cluster_gpus=8)["GPU"] == 1.0
    assert "GPU" not in res.request(RunConfig(method="vqgan", device="cpu"), cluster_gpus=8)
    assert Resources(gpus=0.25).request(cfg, 0)["GPU"] == 0.25
    assert Resources(cpus=0.5).threads == 1 and Resources(cpus=3.7).threads == 3


def test_capacity_counts_runs_that_fit_at_once():
    nodes = [{"CPU": 16.0, "GPU": 2.0}, {"CPU": 2.0}, {"CPU": 8.0, "GPU": 1.0}]
    assert capacity({"CPU": 1.0, "GPU": 0.5}, nodes) == 4 + 2
    assert capacity({"CPU": 1.0}, nodes) == 26
    assert capacity({"CPU": 4.0, "GPU": 1.0}, nodes) == 2 + 1
    assert capacity({"CPU": 1.0, "TPU": 1.0}, nodes) == 0
