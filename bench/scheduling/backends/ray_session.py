"""The driver's Ray session, for every Ray-based backend: join a cluster or start a local instance,
what the workers need to import this checkout, the nodes that are alive, and stopping tasks on
Ctrl-C. Ray is imported inside the functions, so importing this module never loads it."""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from bench.core.errors import UserError
from bench.core.paths import REPO_ROOT

# Shipped to the nodes of a cluster with the code (runtime_env working_dir); results and caches stay, and
# so do the GPU check's bundle (tens of MiB of wheels and weights) and its outputs.
WORKING_DIR_EXCLUDES = [".git", "results", ".make", "**/__pycache__", "*.pyc", ".pytest_cache", ".venv", "venv",
                        "gpu_bundle*", ".gpu_bundle*", "gpu_check", ".venv-gpu-check"]
FORWARDED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "NLTK_DATA", "TORCH_HOME",
                 "CUBLAS_WORKSPACE_CONFIG")  # and every VQBENCH_*; CUBLAS_...: --deterministic (bench/training/determinism.py)
CANCEL_GRACE_S = 10.0  # after Ctrl-C, how long the driver waits for the stopped tasks to resolve


@dataclass
class Session:
    started: bool  # this call started Ray (and shuts it down at the end)
    local: bool  # a Ray instance of this machine only


def repo_root() -> str:
    return str(REPO_ROOT)


def connect(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None) -> Session:
    """Use the Ray session this process already has, else join `address` ("auto" or HOST:PORT)
    shipping the code to the nodes, else start a local Ray instance sized to this machine (or to
    num_cpus/num_gpus) whose workers import the code from this checkout."""
    import ray

    if ray.is_initialized():
        return Session(False, len(ray.nodes()) == 1)
    if address:
        if num_cpus is not None or num_gpus is not None:
            raise UserError("--num-cpus/--num-gpus size a local Ray instance; a cluster joined with "
                            "--ray-address has the resources its nodes were started with")
        # Nodes may not have this checkout: the code travels with the job (results and caches do not).
        ray.init(address=address, runtime_env={"working_dir": repo_root(), "excludes": WORKING_DIR_EXCLUDES,
                                               "env_vars": forwarded_env()}, log_to_driver=True)
        return Session(True, False)
    # A local instance writes no auth token (the project's default, see OFFLINE notes); "local" starts
    # our own instance even when a `ray start` cluster runs on this machine.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
             runtime_env={"env_vars": {"PYTHONPATH": pythonpath()}}, log_to_driver=True)
    return Session(True, True)


def forwarded_env() -> dict[str, str]:
    """Settings the driver was given that the workers on other nodes must see the same way (data
    root, cache folder, offline switches). Local workers inherit the driver's environment anyway."""
    return {k: v for k, v in os.environ.items() if k.startswith("VQBENCH_") or k in FORWARDED_ENV}


def pythonpath() -> str:
    """The repository root first (its `datasets/` must shadow Hugging Face `datasets`), then any
    PYTHONPATH the caller had."""
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != repo_root()]
    return os.pathsep.join([repo_root(), *rest])


def task_runtime_env() -> dict[str, Any] | None:
    """In a session the caller started (tests, notebooks) without shipping the code, point the
    workers at this checkout."""
    import ray

    job_env = ray.get_runtime_context().runtime_env or {}
    if job_env.get("working_dir") or job_env.get("py_modules"):
        return None
    if repo_root() in (job_env.get("env_vars") or {}).get("PYTHONPATH", "").split(os.pathsep)[:1]:
        return None
    return {"env_vars": {"PYTHONPATH": pythonpath()}}


def alive_nodes() -> list[dict[str, Any]]:
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


def cancel_and_drain(refs: Iterable[Any], on_ended: Callable[[Any], None], grace_s: float = CANCEL_GRACE_S) -> None:
    """Ctrl-C, or an error in the driver: stop these tasks, then call `on_ended(ref)` for each one
    that resolves within `grace_s` (a task that had already finished carries a record worth keeping;
    a stopped one resolves as cancelled). A second Ctrl-C skips the wait.

    A running task's worker process is killed (force), not sent KeyboardInterrupt: an interrupt can
    land inside an import and leave the process with half-imported modules (torch's import of triton,
    cut in half, made every later run in that worker fail with "module 'triton.backends' has no
    attribute 'compiler'"), and Ray hands a surviving worker the next task of the same session (a
    notebook, the tests). A killed run leaves what an interrupted one did: its last checkpoint and no
    record, both written atomically, so the next invocation resumes it."""
    import ray

    pending = list(refs)
    for ref in pending:
        try:
            ray.cancel(ref, force=True)
        except Exception:  # noqa: BLE001, S110 - best effort: the task ended meanwhile, or Ray is shutting down
            pass
    deadline = time.monotonic() + grace_s
    try:
        while pending and time.monotonic() < deadline:
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=0.5)
            for ref in ready:
                on_ended(ref)
    except KeyboardInterrupt:
        pass
