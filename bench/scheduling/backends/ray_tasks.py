"""What runs inside a Ray worker: its setup (this project's `datasets`, the run's thread count,
extra registrations), one grid cell, and one node's preparation; and the remote functions that wrap
them. Ray is imported inside the functions."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.core.paths import REPO_ROOT
from bench.runs.config import RunConfig
from bench.scheduling.plan import plan_cells, run_job
from bench.scheduling.prepare import prepare_here

Record = dict[str, Any]


def worker_setup(threads: int, imports: Sequence[str]) -> None:
    """Inside a Ray worker, before any run: the project's `datasets` (not Hugging Face's) must be the
    one imported, torch gets the run's CPU share as threads, and extra modules register themselves."""
    import importlib

    import torch

    import datasets as project_datasets

    if Path(project_datasets.__file__).resolve().parent.parent != REPO_ROOT:
        raise ImportError(f"the Ray worker imported `datasets` from {project_datasets.__file__}, not from the "
                          f"project at {REPO_ROOT}: the repository root must come first on sys.path (PYTHONPATH)")
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    for name in imports:
        importlib.import_module(name)


def run_task(config: RunConfig, out: str, force: bool, threads: int, imports: Sequence[str],
             on_checkpoint: Callable[[int], None] | None) -> tuple[Record, dict[str, Any]]:
    """One grid cell in a Ray worker: `run_one`, without per-run progress bars; and where it ran."""
    import ray

    worker_setup(threads, imports)
    # Ray retries a task whose worker died with the same arguments; only its first attempt may start
    # over (`force`), a retry resumes the checkpoint the dead attempt left, as the ray-train backend's do.
    force = force and _attempt() == 0
    record = run_job(config, out, force=force, progress=False, on_checkpoint=on_checkpoint)
    ctx = ray.get_runtime_context()
    return record, {"node_id": ctx.get_node_id(), "node_ip": ray.util.get_node_ip_address(), "pid": os.getpid()}


def _attempt() -> int:
    """Which attempt of its Ray task this is (0: the first; Ray counts the retries after a lost worker).
    Ray has no public call for it; where the internal one is missing, every attempt counts as the first."""
    import ray

    try:
        return int(ray._private.worker.global_worker.core_worker.get_current_task_attempt_number())
    except AttributeError:
        return 0


def prepare_task(configs: Sequence[RunConfig], imports: Sequence[str]) -> tuple[str, list[str]]:
    """One node's preparation: its node id and the problems (bench.scheduling.prepare.prepare_here)."""
    import ray

    worker_setup(1, imports)
    return ray.get_runtime_context().get_node_id(), prepare_here(plan_cells(configs))


_REMOTE: dict[bool, Any] = {}


def remote_run_task(uses_gpu: bool) -> Any:
    """`run_task` as a Ray remote function (made once per process). A GPU run gets a fresh worker
    process (max_calls=1), so its CUDA memory is returned when it ends; `max_calls` cannot be set
    per call, hence two remote functions."""
    import ray

    if uses_gpu not in _REMOTE:
        _REMOTE[uses_gpu] = ray.remote(max_calls=1)(run_task) if uses_gpu else ray.remote(run_task)
    return _REMOTE[uses_gpu]
