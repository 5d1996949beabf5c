"""Stateful quantizers under data parallelism: a real 2-process gloo group on the CPU. Each worker
gets its own batches and its own random generator state; after a few training steps both hold the
same codebook, and it is the codebook one process gets from the two batches concatenated (with rank
0's generator), i.e. the workers update as one large batch would. OptVQ's transport, likewise, runs
over the latents of both workers."""
import tempfile
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import methods
from methods import distributed

CASES = {
    "vqgan-ema": {"kmeans_init": True, "threshold_ema_dead_code": 3.0},
    "vqgan": {"kmeans_init": True, "threshold_ema_dead_code": 1.5},
    "rvq": {"kmeans_init": True, "threshold_ema_dead_code": 3.0, "levels": 2},
    "cvq": {},  # running usage and re-anchoring onto sampled features
    "diveq": {"noise_variance": 0.0, "replacement_interval": 2, "discard_threshold": 0.3},  # window counts, replacement
    "sf-diveq": {"noise_variance": 0.0, "skip_iters": 3, "avg_iters": 2},  # warm-up chunks, then rank 0's dither
}
K, DIM, STEPS = 16, 4, 3


def _batch(rank: int, step: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 * step + rank)
    return torch.randn(2, DIM, 4, 4, generator=g) * (1.0 + rank)  # the ranks see different data


def _train(name: str, options: dict, batches) -> dict:
    torch.manual_seed(0)
    q = methods.create(name, K, DIM, **options).train()
    torch.manual_seed(100 + distributed.rank())  # generator states differ between workers
    for z in batches:
        out = q(z.requires_grad_(True))
        (out.z_q.square().mean() + out.loss).backward()
    return {k: v.detach().clone() for k, v in q.state_dict().items()}


def _optvq_indices(z: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(0)
    return methods.create("optvq", K, DIM).train()(z).indices


def _worker(rank: int, world: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=world)
    try:
        states = {name: _train(name, options, [_batch(rank, s) for s in range(STEPS)]) for name, options in CASES.items()}
        rows = distributed.gather_rows(torch.full((rank + 1, 2), float(rank)))  # unequal row counts
        torch.save({"states": states, "gathered": rows, "optvq": _optvq_indices(_batch(rank, 0))},
                   Path(folder) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks():
    with tempfile.TemporaryDirectory() as folder:
        mp.spawn(_worker, args=(2, folder), nprocs=2, join=True)
        yield [torch.load(Path(folder) / f"rank{r}.pt") for r in range(2)]


@pytest.mark.parametrize("name", list(CASES))
def test_workers_end_with_the_same_codebook(ranks, name):
    a, b = ranks[0]["states"][name], ranks[1]["states"][name]
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("name", list(CASES))
def test_workers_update_as_one_batch_of_both(ranks, name):
    single = _train(name, CASES[name], [torch.cat([_batch(0, s), _batch(1, s)]) for s in range(STEPS)])
    start = methods.create(name, K, DIM, **CASES[name]).state_dict()
    moved = False
    for key, value in ranks[0]["states"][name].items():
        torch.testing.assert_close(value.float(), single[key].float(), rtol=1e-5, atol=1e-5, msg=key)
        moved |= not torch.equal(value, start[key])
    assert moved


def test_optvq_transport_runs_over_the_latents_of_all_workers(ranks):
    # The normalisation statistics and Sinkhorn marginals are global: each worker's assignment is its
    # part of the assignment of both batches together (which differs from that of its batch alone).
    single = _optvq_indices(torch.cat([_batch(0, 0), _batch(1, 0)]))
    for r in range(2):
        assert torch.equal(ranks[r]["optvq"], single[2 * r : 2 * r + 2])
    assert not torch.equal(ranks[0]["optvq"], _optvq_indices(_batch(0, 0)))


def test_gather_rows_takes_unequal_counts_in_rank_order(ranks):
    expected = torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    for r in ranks:
        assert torch.equal(r["gathered"], expected)


def test_helpers_are_the_identity_without_a_process_group():
    assert not distributed.is_distributed() and distributed.rank() == 0 and distributed.world_size() == 1
    t = torch.arange(3.0)
    assert distributed.all_reduce_sum_(t) is t and torch.equal(t, torch.arange(3.0))
    assert distributed.broadcast_(t) is t and distributed.gather_rows(t) is t

