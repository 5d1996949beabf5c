"""Scheduling overhead on a grid of micro runs (tests/bench/scheduling/tiny.py: 16 px, 4 steps, no perceptual
metrics), so that the runs are short and the scheduling shows:

  no-ray-1t   in this process, one after another, 1 torch thread
  ray-1x1     local Ray with 1 CPU, 1 CPU per run: 1 run at a time, 1 thread (vs no-ray-1t: the overhead)
  ray-1x2     local Ray with 2 CPUs, 2 CPUs per run: 1 run at a time, 2 threads
  ray-2x1     local Ray with 2 CPUs, 1 CPU per run: 2 runs at a time, 1 thread each
  no-ray-2t   in this process, 2 torch threads (what --no-ray does on 2 cores)

Each Ray mode's time includes starting and stopping its local instance (reported separately too).
The modes run in order, then in reverse order, to even out the load of a shared machine.

    RAY_AUTH_MODE=disabled python -m tests.bench.scheduling.measure_scheduling [RUNS]

Prints one JSON line per measurement and a summary line. Not a test (pytest does not collect it).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import torch

MODES = ("no-ray-1t", "ray-1x1", "ray-1x2", "ray-2x1", "no-ray-2t")


def _configs(runs: int, tag: int):
    from bench.runs.config import RunConfig
    from tests.bench.scheduling import tiny

    # a distinct seed range per measurement, so nothing is skipped as finished
    return [RunConfig(method="vqgan", dataset=tiny.DATASET, codebook_size=16, seed=1000 * tag + s, preset=tiny.PRESET)
            for s in range(runs)]


def measure(mode: str, runs: int, tag: int, tmp: str) -> dict:
    import ray

    from bench import api
    from bench.scheduling.backends.ray_session import connect
    from bench.scheduling.resources import Resources
    from tests.bench.scheduling import tiny

    out = f"{tmp}/{mode}-{tag}"
    row: dict = {"mode": mode, "runs": runs, "load1": round(os.getloadavg()[0], 2)}
    t = time.perf_counter()
    if mode.startswith("no-ray"):
        threads = torch.get_num_threads()
        torch.set_num_threads(int(mode[-2]))
        try:
            recs = api.run_grid(_configs(runs, tag), out, backend="local", progress=False)
        finally:
            torch.set_num_threads(threads)
    else:
        at_once, per_run = int(mode[4]), int(mode[6])  # ray-AxB: A runs at a time, B CPUs (threads) each
        connect(num_cpus=at_once * per_run)
        row["init_s"] = round(time.perf_counter() - t, 2)
        recs = api.run_grid(_configs(runs, tag), out, progress=False, worker_imports=[tiny.WORKER_MODULE],
                            resources=Resources(cpus=per_run))
        ray.shutdown()
    row["wall_s"] = round(time.perf_counter() - t, 2)
    row["run_wall_s_mean"] = round(sum(r["wall_s"] for r in recs) / runs, 2)
    assert all(r["status"] == "finished" for r in recs), [r.get("error") for r in recs]
    print(json.dumps(row), flush=True)
    return row


def main(runs: int = 4) -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from bench import api
    from tests.bench.scheduling import tiny

    tiny.register()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # warm this process (imports, first kernels) as the Ray workers warm theirs in each measurement
        api.run_grid(_configs(1, 99), f"{tmp}/warm", backend="local", progress=False)
        for tag, mode in enumerate(MODES + MODES[::-1]):
            rows.append(measure(mode, runs, tag, tmp))
    mean = {m: sum(r["wall_s"] for r in rows if r["mode"] == m) / 2 for m in MODES}
    init = {m: sum(r.get("init_s", 0.0) for r in rows if r["mode"] == m) / 2 for m in MODES}
    summary = {
        "mean_wall_s": {m: round(v, 2) for m, v in mean.items()},
        "ratio_ray_1x1_vs_no_ray_1t": round(mean["ray-1x1"] / mean["no-ray-1t"], 2),
        "overhead_per_run_s_incl_start": round((mean["ray-1x1"] - mean["no-ray-1t"]) / runs, 2),
        "overhead_per_run_s_excl_start": round((mean["ray-1x1"] - init["ray-1x1"] - mean["no-ray-1t"]) / runs, 2),
        "ray_start_s": round(init["ray-1x1"], 2),
        "speedup_2_at_once_vs_1_at_once_2_threads": round(mean["ray-1x2"] / mean["ray-2x1"], 2),
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
