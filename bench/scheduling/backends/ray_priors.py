"""Priors as Ray tasks, for `--generate` with a Ray-based backend (bench.generation.schedule).

The session is the one the tokenizers run in: opened here before the grid, with the backend's own
address / num_cpus / num_gpus, so the backend finds it open and leaves it open; closed here after
the last prior. A prior asks for what a tokenizer run asks (the backend's `resources`), gets the
same worker setup (bench.scheduling.backends.ray_tasks.worker_setup) and the same retry rule: a
worker that died is retried (the prior resumes from its checkpoint and sampled batches), an error
of the prior's own code never is. Ray is imported inside the methods.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from bench.generation import folder
from bench.generation.config import PriorConfig
from bench.generation.record import FAILED, PriorRecord, read_prior_record
from bench.runs.config import RunConfig
from bench.scheduling.resources import Resources

if TYPE_CHECKING:
    from bench.generation.schedule import PriorJobs

Record = dict[str, Any]


def prior_task(tok_dir: str, prior: PriorConfig, out: str, force: bool, threads: int, imports: Sequence[str],
               device: str | None, data_root: str | None, dataset_paths: dict[str, str] | None,
               deterministic: bool = False) -> Record:
    """One prior in a Ray worker: `run_prior`, without progress bars."""
    from bench.generation.run import run_prior
    from bench.scheduling.backends.ray_tasks import worker_setup

    worker_setup(threads, imports)
    return run_prior(tok_dir, prior, out, force=force, progress=False, device=device, data_root=data_root,
                     dataset_paths=dataset_paths, deterministic=deterministic)


_REMOTE: dict[bool, Any] = {}


def remote_prior_task(uses_gpu: bool) -> Any:
    """`prior_task` as a remote function; a GPU prior gets a fresh worker (its CUDA memory is freed
    when it ends), as a GPU tokenizer run does (ray_tasks.remote_run_task)."""
    import ray

    if uses_gpu not in _REMOTE:
        _REMOTE[uses_gpu] = ray.remote(max_calls=1)(prior_task) if uses_gpu else ray.remote(prior_task)
    return _REMOTE[uses_gpu]


class RayPriors:
    """Context manager: the Ray session, the prior tasks submitted in it, and their outcomes."""

    def __init__(self, jobs: PriorJobs, backend_options: dict[str, Any]) -> None:
        from bench.scheduling.backends.ray import DEFAULT_MAX_RETRIES

        self.jobs = jobs
        self.address = backend_options.get("address")
        self.num_cpus, self.num_gpus = backend_options.get("num_cpus"), backend_options.get("num_gpus")
        self.resources: Resources = backend_options.get("resources") or Resources()
        self.max_retries = backend_options.get("max_retries", DEFAULT_MAX_RETRIES)
        self.imports = list(backend_options.get("worker_imports", ()))
        self.refs: dict[Any, tuple[str, Path, RunConfig]] = {}
        self.done: set[Any] = set()

    def __enter__(self) -> Self:
        from bench.scheduling.backends.ray_session import alive_nodes, connect, task_runtime_env

        self.session = connect(self.address, self.num_cpus, self.num_gpus)
        self.cluster_gpus = sum(n["Resources"].get("GPU", 0.0) for n in alive_nodes())
        self.runtime_env = task_runtime_env()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        import ray

        try:
            if exc_type is not None:
                self._cancel()
        finally:
            if self.session.started:
                ray.shutdown()

    def submit(self, tok_dir: Path, config: RunConfig, prior_id: str) -> None:
        req = self.resources.request(config, self.cluster_gpus)
        gpus = req.get("GPU", 0.0)
        options: dict[str, Any] = {"num_cpus": req["CPU"], "num_gpus": gpus, "max_retries": self.max_retries,
                                   "retry_exceptions": False, "name": f"vqbench-prior:{prior_id}"}
        if "memory" in req:
            options["memory"] = int(req["memory"])
        custom = {k: v for k, v in req.items() if k not in ("CPU", "GPU", "memory")}
        if custom:
            options["resources"] = custom
        if self.runtime_env:
            options["runtime_env"] = self.runtime_env
        ref = remote_prior_task(bool(gpus)).options(**options).remote(
            str(tok_dir), self.jobs.prior, str(self.jobs.out), self.jobs.force, self.resources.threads, self.imports,
            config.device, config.data_root, dict(config.dataset_paths) or None, config.deterministic)
        self.refs[ref] = (prior_id, tok_dir, config)

    def wait(self) -> None:
        """Report every prior as it ends, after the tokenizers' part of the grid has returned."""
        import ray

        pending = [r for r in self.refs if r not in self.done]
        if pending:
            print(f"tokenizers done; waiting for {len(pending)} prior(s)", file=sys.stderr, flush=True)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=1.0)
            for ref in ready:
                self.done.add(ref)
                self.jobs.report(self._outcome(ref))

    def _outcome(self, ref: Any) -> Record:
        """The prior's record; for an error `run_prior` did not record, a failed one (written when it
        would happen again; not written when the worker died or the task was cancelled, so the next
        invocation resumes it)."""
        import ray
        from ray.exceptions import RayError, RayTaskError, TaskCancelledError

        pid, tok_dir, config = self.refs[ref]
        try:
            record = ray.get(ref)
        except TaskCancelledError:
            return self._failed(pid, tok_dir, config, "TaskCancelledError: cancelled; the next invocation resumes it")
        except RayTaskError as exc:
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            failed = self._failed(pid, tok_dir, config, f"{type(cause).__name__}: {cause}")
            PriorRecord.from_json(failed).write(self.jobs.out)
            return failed
        except RayError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return self._failed(pid, tok_dir, config, f"{type(exc).__name__}: {first} (no retries left; the next "
                                                      "invocation resumes the prior)")
        # A worker on a node with its own disk wrote the record there; the tables read the driver's folder.
        if read_prior_record(folder.prior_dir(self.jobs.out, record["prior_id"])) != record:
            PriorRecord.from_json(record).write(self.jobs.out)
        return record

    def _failed(self, pid: str, tok_dir: Path, config: RunConfig, error: str) -> Record:
        tokenizer = {"run_id": tok_dir.name, "run_dir": str(tok_dir), "method": config.method,
                     "dataset": config.dataset, "codebook_size": config.codebook_size, "seed": config.seed}
        return PriorRecord(pid, FAILED, tokenizer, self.jobs.prior.to_dict(), error=error).to_json()

    def _cancel(self) -> None:
        """Ctrl-C or an error in the driver: stop the priors (a running one's worker is killed, so the
        prior leaves its checkpoint and no record; ray_session.cancel_and_drain) and report those
        that had ended."""
        from bench.scheduling.backends.ray_session import cancel_and_drain

        def ended(ref: Any) -> None:
            record = self._outcome(ref)
            if "cancelled" not in str(record.get("error")):
                self.jobs.report(record)

        cancel_and_drain([r for r in self.refs if r not in self.done], ended)
