"""The programmatic API; the CLI is a thin layer over it.

    from bench import api
    record = api.run(RunConfig(method="vqgan", codebook_size=256, steps=50))
    records = api.run_grid(configs)
    df = api.table("results")
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from bench.reporting import tables
from bench.runs.config import RunConfig
from bench.runs.runner import DEFAULT_OUT, run_one


def run(config: RunConfig, out: Path | str = DEFAULT_OUT, force: bool = False, progress: bool = True) -> dict[str, Any]:
    """One run, in-process: the result record."""
    return run_one(config, out, force=force, progress=progress)


def grid(methods: Iterable[str], datasets: Iterable[str], codebook_sizes: Iterable[int], seeds: Iterable[int],
         **common: Any) -> list[RunConfig]:
    """methods x datasets x codebook sizes x seeds, in that nesting order."""
    return [RunConfig(method=m, dataset=d, codebook_size=k, seed=s, **common)
            for d in datasets for k in codebook_sizes for m in methods for s in seeds]


def run_grid(configs: list[RunConfig], out: Path | str = DEFAULT_OUT, force: bool = False, progress: bool = True,
             on_record: Callable[[dict[str, Any]], None] | None = None, backend: str = "ray",
             **backend_options: Any) -> list[dict[str, Any]]:
    """Every config, run by `backend`: "ray" (Ray tasks on a local instance sized to this machine,
    or a cluster with `address=`), "local" (one after another in this process), or any backend
    registered in bench.scheduling.backends. Records come back in the order of `configs`;
    `on_record` sees each as its run ends. The backend name, its options and every config are
    checked before the first run starts, so a typo in the last one does not waste the others' time.
    `backend_options` go to the backend; "ray" takes address, num_cpus, num_gpus, resources,
    max_retries, on_checkpoint, worker_imports; "local" takes on_checkpoint. An option the backend
    does not take is a TypeError naming it. `wait=False` leaves the runs that another driver on `out`
    is training (docs/scheduling.md, leases) instead of waiting for their records."""
    from bench.scheduling import grid

    return grid.run_grid(configs, out, force=force, progress=progress, on_record=on_record, backend=backend,
                         **backend_options)


def table(records_dir: Path | str = DEFAULT_OUT, methods: list[str] | None = None,
          datasets: list[str] | None = None) -> pd.DataFrame:
    """The frame behind the tables (paper layout) of every record under `records_dir`: per row the
    mean and std of each metric, its 95% interval (`<metric>_lo`, `_hi`), its mark (`_rank`) and,
    for a row not resolved across seeds from its column's best, about how many seeds would resolve
    the difference observed (`_seeds_needed`; docs/results.md)."""
    return tables.build(Path(records_dir), methods=methods, datasets=datasets).per_dataset
