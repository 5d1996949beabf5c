"""Evaluation never enters a collective. In a data-parallel group rank 0 evaluates alone while the
other ranks wait (bench.runs.runner), so a collective in an eval-mode forward waits for ranks that
never join: OptVQ with eval_assignment=sinkhorn deadlocked that way until the group's timeout.

- every registered method (and the stateful tricks) in eval mode calls no collective, with a process
  group faked so that any collective fails;
- `methods.distributed.local_only()` makes every helper act on one worker;
- a real 2-process gloo group: rank 0 evaluates OptVQ (Sinkhorn in eval) alone, through the model and
  through the evaluator, while rank 1 does nothing; a short group timeout turns a regression into a
  failure instead of a hang."""
from __future__ import annotations

import datetime
import tempfile
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import methods
from methods import distributed

from .checks import latent

K, DIM = 16, 8
TRICKS = {  # stateful options whose training forward communicates
    "vqgan": {"kmeans_init": True, "threshold_ema_dead_code": 1.5},
    "vqgan-ema": {"kmeans_init": True, "threshold_ema_dead_code": 3.0},
    "rvq": {"kmeans_init": True, "threshold_ema_dead_code": 3.0, "levels": 2},
    "optvq": {"eval_assignment": "sinkhorn"},
}
GROUP_TIMEOUT_S = 30  # a regression fails after this instead of hanging (the default is 30 min, 24 h in runs)


class _Collective(AssertionError):
    pass


@pytest.fixture
def fake_group(monkeypatch):
    """A process group of 2 in which every collective fails."""
    def refuse(*args, **kwargs):
        raise _Collective("a collective was called")

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: 2)
    monkeypatch.setattr(dist, "get_rank", lambda *a, **k: 0)
    monkeypatch.setattr(dist, "get_backend", lambda *a, **k: "gloo")
    for name in ("all_reduce", "broadcast", "all_gather", "barrier", "reduce", "gather", "scatter"):
        monkeypatch.setattr(dist, name, refuse)


def _cases() -> list:
    return ([pytest.param(name, {}, id=name) for name in methods.available()]
            + [pytest.param(name, options, id=f"{name}+{'+'.join(options)}") for name, options in TRICKS.items()])


@pytest.mark.parametrize("name,options", _cases())
def test_eval_mode_calls_no_collective(fake_group, name, options):
    torch.manual_seed(0)
    q = methods.create(name, K, DIM, **options).eval()
    z = latent(q, scale=0.3)
    with torch.no_grad():
        out = q(z)
        q.decode_indices(out.indices)


def test_the_fake_group_catches_a_training_collective(fake_group):
    """The test above can fail: a training forward of a stateful method does communicate."""
    torch.manual_seed(0)
    q = methods.create("optvq", K, DIM).train()
    with pytest.raises(_Collective):
        q(latent(q))


def test_local_only_is_a_group_of_one(fake_group):
    assert distributed.is_distributed() and distributed.world_size() == 2
    with distributed.local_only():
        assert not distributed.is_distributed()
        assert (distributed.rank(), distributed.world_size()) == (0, 1)
        t = torch.ones(3)
        assert distributed.all_reduce_sum_(t) is t and torch.equal(t, torch.ones(3))
        assert torch.equal(distributed.gather_rows(t[:, None]), t[:, None])
        with distributed.local_only():
            pass
        assert not distributed.is_distributed()  # the inner block left the outer one in place
        torch.manual_seed(0)
        q = methods.create("optvq", K, DIM).train()
        q(latent(q))  # even a training forward stays on this process
    assert distributed.is_distributed()


def test_the_runner_reads_the_code_layout_as_a_group_of_one(fake_group):
    """After training, rank 0 encodes one image to learn the code layout (indices per image) while the
    other ranks wait: that forward, too, must stay on this process."""
    from bench.runs.runner import _code_layout

    class Model(torch.nn.Module):
        def forward(self, x):
            seen.append(distributed.is_distributed())
            return x, type("Out", (), {"indices": torch.zeros(1, 4, 4, 3, dtype=torch.long)})()

    seen: list[bool] = []
    assert _code_layout(Model(), [torch.zeros(3, 16, 16, dtype=torch.uint8)], torch.device("cpu")) == (16, 3)
    assert seen == [False]


# --- a real 2-process group --------------------------------------------------------------------------

def _free_port() -> int:
    from tests.bench.training.data_parallel import free_port

    return free_port()


def _evaluate_alone(folder: Path) -> dict:
    """What rank 0 does: OptVQ with Sinkhorn in eval, through the model and through the evaluator."""
    from bench.evaluation.evaluator import evaluate
    from bench.models.autoencoder import VQAutoencoder
    from datasets.tensor_dataset import UInt8Images

    torch.manual_seed(0)
    q = methods.create("optvq", K, DIM, eval_assignment="sinkhorn")
    model = VQAutoencoder(q, ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), resolution=16,
                          z_channels=DIM).eval()
    with torch.no_grad():
        indices = q(latent(q, b=4)).indices
    images = torch.randint(0, 256, (4, 3, 16, 16), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    data = UInt8Images(images, [f"i{i}" for i in range(4)], {"dataset": "random", "split": "val", "resolution": 16})
    (folder / "run").mkdir()
    metrics, _ = evaluate(model, data, folder / "run", torch.device("cpu"), batch_size=2, perceptual=False)
    return {"indices": indices, "psnr": metrics["psnr"]}


def _worker(rank: int, port: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=GROUP_TIMEOUT_S))
    done = Path(folder) / "rank0.pt"
    try:
        if rank == 0:
            assert distributed.is_distributed()
            t0 = time.perf_counter()
            result = _evaluate_alone(Path(folder))
            result["seconds"] = time.perf_counter() - t0
            torch.save(result, done)
        else:  # does nothing (no collective) until rank 0 has finished, or gives up
            deadline = time.monotonic() + 3 * GROUP_TIMEOUT_S
            while not done.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
    finally:
        dist.destroy_process_group()


def test_rank_0_evaluates_optvq_alone_while_rank_1_does_nothing():
    with tempfile.TemporaryDirectory() as folder:
        mp.spawn(_worker, args=(_free_port(), folder), nprocs=2, join=True)
        result = torch.load(Path(folder) / "rank0.pt")
    assert result["seconds"] < GROUP_TIMEOUT_S
    assert result["psnr"] is not None
    # The same tokens as one process alone: the eval-mode transport ran over this process's batch only.
    torch.manual_seed(0)
    q = methods.create("optvq", K, DIM, eval_assignment="sinkhorn").eval()
    with torch.no_grad():
        assert torch.equal(result["indices"], q(latent(q, b=4)).indices)
