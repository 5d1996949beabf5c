"""A data-parallel group without Ray, for the tests of what its workers do: N gloo processes
(torch.multiprocessing) that each call `run_job` on the same jobs, as Ray Train's workers do in the
ray-train backend. Each process logs which rank evaluated and which wrote a record, and saves what
`run_job` returned (or raised) per job."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.distributed as dist

from tests.bench.training.data_parallel import free_port


def _member(rank: int, workers: int, port: int, jobs: list, out: str, results: str) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)  # as a Ray worker with --cpus-per-run 1
    from bench.runs import runner
    from bench.runs.records import RunRecord
    from bench.scheduling.plan import run_job
    from tests.bench.scheduling import tiny

    tiny.register()
    log = Path(results).with_suffix(".log")

    def logged(what: str, fn):
        def call(*args, **kwargs):
            with open(log, "a") as f:
                f.write(f"{rank} {what}\n")
            return fn(*args, **kwargs)
        return call

    runner.evaluate = logged("evaluate", runner.evaluate)
    RunRecord.write = logged("write", RunRecord.write)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=workers)
    outcomes = []
    try:
        for job in jobs:
            try:
                outcomes.append({"record": run_job(job, out, progress=False)})
            except Exception as exc:  # noqa: BLE001 - the test looks at what each rank raised
                outcomes.append({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        dist.destroy_process_group()
    Path(f"{results}.rank{rank}.json").write_text(json.dumps(outcomes, default=str))


def run_in_group(jobs: list, out: Path, results: Path, workers: int = 2) -> list[list[dict]]:
    """Every job on `workers` gloo processes, one after another; per rank, the outcome of each job."""
    torch.multiprocessing.spawn(_member, args=(workers, free_port(), jobs, str(out), str(results)), nprocs=workers,
                                join=True)
    return [json.loads(Path(f"{results}.rank{r}.json").read_text()) for r in range(workers)]


def log_lines(results: Path) -> list[str]:
    path = results.with_suffix(".log")
    return path.read_text().splitlines() if path.exists() else []
