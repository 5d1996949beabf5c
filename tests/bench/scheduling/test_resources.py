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


# GPU memory: the driver refuses a grid whose runs cannot fit on this machine's GPUs (issue 25).

def _gpu(monkeypatch, total_bytes: int) -> None:
    """A "CUDA machine" with one GPU of `total_bytes`, by torch.cuda's device properties only."""
    import types

    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda i: types.SimpleNamespace(name="Fake GPU", total_memory=total_bytes))


def _paper(k: int = 1024, **kw):
    from bench.runs.config import resolve

    return resolve(RunConfig(method="vqgan", preset="paper", codebook_size=k, **kw))


def test_runs_per_gpu_follow_the_share():
    from bench.scheduling.gpu_fit import runs_per_gpu

    assert [runs_per_gpu(s) for s in (0.5, 0.25, 0.3, 1.0, 2.0)] == [2, 4, 3, 1, 1]


def test_training_bytes_count_the_networks_and_the_quantizer():
    from bench.scheduling.gpu_fit import training_bytes

    small, large = training_bytes(_paper(1024)), training_bytes(_paper(1024 + 2**20))
    assert large - small == 2**20 * 256 * 16  # K x dim x (weight, gradient, two Adam moments) in float32
    assert 1.0e9 < small < 1.4e9  # the paper preset's encoder, decoder and discriminator: about 75 M parameters


def test_gpu_memory_check_refuses_packed_runs_that_cannot_fit_with_one_line(monkeypatch):
    from bench.scheduling.gpu_fit import check_gpu_memory, training_bytes

    run = _paper()
    one = training_bytes(run)
    _gpu(monkeypatch, int(1.5 * one))
    check_gpu_memory([(run, 1.0)])  # one run per GPU fits
    with pytest.raises(UserError) as err:
        check_gpu_memory([(run, 1.0), (run, 0.5)])  # two per GPU do not
    message = str(err.value)
    assert "\n" not in message and "x 2 runs per GPU (--gpus-per-run 0.5)" in message
    assert "Fake GPU" in message and message.endswith("use --gpus-per-run 1, a smaller --codebook-sizes, a smaller --preset")
    _gpu(monkeypatch, one // 2)
    with pytest.raises(UserError, match="more than the .* GiB of the GPU here"):
        check_gpu_memory([(run, 1.0)])


def test_gpu_memory_check_never_touches_cuda_for_cpu_runs(monkeypatch):
    import types

    import torch

    from bench.scheduling.gpu_fit import check_gpu_memory

    class NoCuda(types.ModuleType):
        def __getattr__(self, name):
            raise AssertionError(f"torch.cuda.{name} touched for CPU runs")

    monkeypatch.setattr(torch, "cuda", NoCuda("torch.cuda"))
    check_gpu_memory([(_paper(device="cpu"), 1.0), (_paper(), 0.0)])  # device cpu, or no GPU asked for


def test_a_grid_that_cannot_fit_the_gpu_exits_2_before_any_run(tmp_path, monkeypatch, capsys):
    from bench.cli.main import main

    _gpu(monkeypatch, 2**20)  # a 1 MiB GPU
    code = main(["--methods", "vqgan", "--preset", "smoke", "--codebook-sizes", "16", "--no-ray", "--no-progress",
                 "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "GiB of the GPU here (Fake GPU)" in err[0]
    assert not (tmp_path / "runs").exists()
