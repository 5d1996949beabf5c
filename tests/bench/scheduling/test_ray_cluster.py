"""A multi-node cluster simulated on this machine (ray.cluster_utils.Cluster): a head without CPUs
(like a login node), a "GPU" node that declares one GPU and a custom resource, and a CPU-only node.
The driver joins it by address, as `--ray-address HOST:PORT` does, so the code travels to the nodes
as the job's working_dir. Runs that ask for a (fractional) GPU or the custom resource land on the
node that has it, and preparation runs once on each node that can host a run, and only there.
About 45 s on 2 busy cores (a cluster of three nodes, cold workers)."""
from __future__ import annotations

from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster

from bench import api
from bench.runs import records
from bench.runs.config import RunConfig
from bench.scheduling.resources import Resources
from tests.bench.scheduling import tiny


@pytest.fixture(scope="module", autouse=True)
def _test_registrations():
    """The tests' preset, datasets and method, in this process while this module runs (tiny.py)."""
    with tiny.registered():
        yield


@pytest.fixture(scope="module")
def cluster():
    assert not ray.is_initialized(), "another test left a Ray session open"
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    gpu = c.add_node(num_cpus=1, num_gpus=1, resources={"fake_accel": 2})
    cpu = c.add_node(num_cpus=1)
    c.wait_for_nodes()
    yield {"address": c.address, "gpu": gpu.node_id, "cpu": cpu.node_id, "head": c.head_node.node_id}
    if ray.is_initialized():
        ray.shutdown()
    c.shutdown()


def _configs(trace: Path) -> list[RunConfig]:
    return [RunConfig(method=tiny.TRACED_METHOD, dataset=tiny.DATASET, codebook_size=16, seed=s, preset=tiny.PRESET,
                      method_options={"trace_dir": str(trace)}) for s in (0, 1)]


def _prepared_on(trace: Path) -> list[str]:
    return [line.split()[1] for line in (trace / "prepare-K16.txt").read_text().splitlines()]


def test_gpu_runs_land_on_the_node_with_the_resource(cluster, tmp_path):
    (tmp_path / "trace").mkdir()
    # Two runs fit the one GPU (and its node's one CPU); the custom resource names the same node.
    res = Resources(cpus=0.5, gpus=0.5, custom={"fake_accel": 1})
    recs = api.run_grid(_configs(tmp_path / "trace"), tmp_path / "out", progress=False, address=cluster["address"],
                        resources=res, worker_imports=[tiny.WORKER_MODULE])
    assert [r["status"] for r in recs] == ["finished", "finished"]
    assert {r["placement"]["node_id"] for r in recs} == {cluster["gpu"]}
    assert all(r["device"] == "cpu" for r in recs)  # the "GPU" is only declared: CUDA is absent here
    assert _prepared_on(tmp_path / "trace") == [cluster["gpu"]]  # once, on the only node that can host them
    assert not ray.is_initialized()  # the driver left the cluster it joined
    on_disk = {r["run_id"] for r in records.iter_records(tmp_path / "out")}
    assert on_disk == {r["run_id"] for r in recs}


@pytest.mark.slow  # two more jobs on the cluster, each with cold workers: about 40 s on 2 busy cores
def test_cpu_runs_spread_and_custom_resources_steer(cluster, tmp_path):
    (tmp_path / "trace").mkdir()
    # One CPU per run, no GPU: both worker nodes can host a run (the head has no CPUs), so the
    # datasets and the method are prepared on both, the first alone and then the other.
    recs = api.run_grid(_configs(tmp_path / "trace"), tmp_path / "cpu", progress=False, address=cluster["address"],
                        resources=Resources(cpus=1, gpus=0), worker_imports=[tiny.WORKER_MODULE])
    assert all(r["status"] == "finished" for r in recs)
    assert {r["placement"]["node_id"] for r in recs} <= {cluster["gpu"], cluster["cpu"]}
    assert sorted(_prepared_on(tmp_path / "trace")) == sorted([cluster["gpu"], cluster["cpu"]])
    # a custom resource only the first worker node has
    (tmp_path / "trace2").mkdir()
    recs = api.run_grid(_configs(tmp_path / "trace2"), tmp_path / "custom", progress=False,
                        address=cluster["address"], resources=Resources(cpus=0.5, gpus=0,
                                                                                   custom={"fake_accel": 1}),
                        worker_imports=[tiny.WORKER_MODULE])
    assert {r["placement"]["node_id"] for r in recs} == {cluster["gpu"]}
    assert _prepared_on(tmp_path / "trace2") == [cluster["gpu"]]
