"""`ray`: every cell as a Ray task, on a local Ray instance sized to this machine or on a cluster.

A Ray task calls the same `run_one` that runs in-process, and everything that makes a grid safe to
stop and start again lives in `run_one` (failures are records, an interrupted run leaves its
checkpoint and no record). What this backend adds:

- resources per run (bench.scheduling.resources), so Ray packs runs;
- per-machine preparation (dataset splits, `Quantizer.prepare` caches) before any run starts, so
  parallel runs never race to build the same cache;
- records streamed as runs end (`ray.wait`), with the status line kept current;
- retries of runs whose worker died (killed, out of memory, node lost): the retry resumes from the
  run's checkpoint because `run_one` does. Errors of the run itself are recorded by `run_one` and
  are not retried;
- Ctrl-C: tasks are cancelled (running ones by killing their workers), the records of runs that had ended
  are kept.

Ray is imported inside the methods, so importing this module (which registering it does) never
loads it.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.core.errors import UserError
from bench.scheduling.backends import Record, Report, register_backend
from bench.scheduling.backends.ray_session import alive_nodes, cancel_and_drain, connect, task_runtime_env
from bench.scheduling.backends.ray_tasks import prepare_task, remote_run_task
from bench.scheduling.driver_records import failed_record, persist
from bench.scheduling.gpu_fit import check_gpu_memory
from bench.scheduling.plan import Cell
from bench.scheduling.prepare import prepare_here, warn
from bench.scheduling.progress import Progress
from bench.scheduling.resources import Resources, capacity, fits

DEFAULT_MAX_RETRIES = 3  # retries of a run whose worker died; errors of the run itself are never retried
WAIT_TICK_S = 1.0  # the driver wakes at least this often: progress line, Ctrl-C


@register_backend("ray")
class RayBackend:
    """`address`: join a cluster ("auto" or HOST:PORT); default: a local instance sized to this
    machine, or `num_cpus`/`num_gpus`. `resources`: what each run asks for. `max_retries`: how often a
    run whose worker died is started again (from its checkpoint). `on_checkpoint(step)` runs in the
    worker after each checkpoint (picklable; tests inject faults with it). `worker_imports`: modules
    every worker imports first (to register methods or datasets that live outside the project)."""

    summary = "runs each run as a Ray task, on this machine or a cluster"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None,
                 resources: Resources | None = None, max_retries: int = DEFAULT_MAX_RETRIES,
                 on_checkpoint: Callable[[int], None] | None = None, worker_imports: Sequence[str] = ()) -> None:
        if max_retries < 0:
            raise UserError(f"max retries must be >= 0, got {max_retries}")
        self.address, self.num_cpus, self.num_gpus = address, num_cpus, num_gpus
        self.resources = resources or Resources()
        self.max_retries = max_retries
        self.on_checkpoint = on_checkpoint
        self.worker_imports = list(worker_imports)

    def run(self, cells: Sequence[Cell], out: Path, force: bool, progress: Progress, report: Report) -> None:
        import ray

        out = Path(out).resolve()  # workers on other machines need the driver's absolute path
        session = connect(self.address, self.num_cpus, self.num_gpus)
        try:
            nodes = alive_nodes()
            cluster_gpus = sum(n["Resources"].get("GPU", 0.0) for n in nodes)
            requests = {cell.run_id: self.resources.request(cell.config, cluster_gpus) for cell in cells}
            check_feasible(requests.values(), nodes, strict=session.local)
            if session.local:  # this machine's GPUs are the runs' (a cluster's nodes may have others)
                check_gpu_memory([(cell.run, requests[cell.run_id].get("GPU", 0.0)) for cell in cells])
            prepare_nodes(cells, requests, nodes, self.worker_imports)
            runtime_env = task_runtime_env()
            refs = {self._submit(cell, requests[cell.run_id], out, force, runtime_env): cell for cell in cells}
            # "running" on the status line: how many in-flight runs fit at once (the largest request decides)
            progress.slots = max(1, min(capacity(r, [n["Resources"] for n in nodes]) for r in requests.values()))
            try:
                _collect(refs, out, progress, report)
            except KeyboardInterrupt:
                progress.clear()
                _cancel(refs, out, report)
                raise
        finally:
            if session.started:
                ray.shutdown()

    def _submit(self, cell: Cell, req: dict[str, float], out: Path, force: bool, runtime_env: dict | None) -> Any:
        gpus = req.get("GPU", 0.0)
        custom = {k: v for k, v in req.items() if k not in ("CPU", "GPU", "memory")}
        options: dict[str, Any] = dict(num_cpus=req["CPU"], num_gpus=gpus, max_retries=self.max_retries,
                                       retry_exceptions=False, name=f"vqbench:{cell.run_id}")
        if "memory" in req:
            options["memory"] = int(req["memory"])
        if custom:
            options["resources"] = custom
        if runtime_env:
            options["runtime_env"] = runtime_env
        return remote_run_task(bool(gpus)).options(**options).remote(
            cell.config, str(out), force, self.resources.threads, self.worker_imports, self.on_checkpoint)


def prepare_nodes(cells: Sequence[Cell], requests: dict[str, dict[str, float]], nodes: list[dict[str, Any]],
                  imports: Sequence[str]) -> None:
    """Build datasets and method caches once per machine before any run starts. On a one-machine
    Ray this happens here, in the driver. On a cluster each node that can host a run gets a small
    task with the configs it may run: the first node alone, then the others together, so that
    nodes sharing a filesystem find the caches built and nodes with their own disks build in
    parallel without racing (a run never builds a shared cache while another reads it). `requests`: what
    one worker of each run asks for (by run id); `imports`: the modules every worker imports first."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    hosts = [n for n in nodes if any(fits(r, n["Resources"]) for r in requests.values())]
    if not hosts or all(n["NodeID"] == here for n in hosts):
        warn(prepare_here(cells))
        return

    def launch(node: dict[str, Any]) -> Any:
        mine = [c.config for c in cells if fits(requests[c.run_id], node["Resources"])]
        return ray.remote(prepare_task).options(
            num_cpus=min(1.0, node["Resources"].get("CPU", 0.0)), max_retries=1, runtime_env=task_runtime_env(),
            scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
        ).remote(mine, imports)

    first = ray.get(launch(hosts[0]))
    rest = ray.get([launch(n) for n in hosts[1:]])
    warn(sorted({p for _, node_problems in [first, *rest] for p in node_problems}))


def check_feasible(requests: Iterable[dict[str, float]], nodes: list[dict[str, Any]], strict: bool) -> None:
    for req in {json.dumps(r, sort_keys=True): r for r in requests}.values():
        if not any(fits(req, n["Resources"]) for n in nodes):
            have = "; ".join(_node_summary(n) for n in nodes) or "no nodes"
            msg = f"no Ray node can run a run that needs {_fmt_request(req)} (nodes: {have})"
            if strict:
                raise UserError(msg + "; lower --cpus-per-run/--gpus-per-run/--memory-per-run, or join a cluster "
                                "with --ray-address")
            print(f"warning: {msg}; the runs wait until such a node joins", file=sys.stderr, flush=True)


def _fmt_request(req: dict[str, float]) -> str:
    return ", ".join(f"{v / 2**30:.3g} GiB memory" if k == "memory" else f"{v:g} {k}" for k, v in req.items())


def _node_summary(node: dict[str, Any]) -> str:
    res = node["Resources"]
    shown = {k: v for k, v in res.items() if k in ("CPU", "GPU", "memory") or not k.startswith("node:")
             and not k.startswith("accelerator_type") and k != "object_store_memory"}
    return f"{node.get('NodeManagerAddress', '?')}: {_fmt_request(shown)}"


def _outcome(ref: Any, cell: Cell, out: Path) -> Record | None:
    """The record of a task that ended: the run's own, or one for an error `run_one` did not catch;
    None when the task was cancelled (no record: the run resumes next time)."""
    import ray
    from ray.exceptions import RayError, RayTaskError, TaskCancelledError

    try:
        record, placement = ray.get(ref)
        record = {**record, "placement": placement}
    except TaskCancelledError:
        return None
    except RayTaskError as exc:
        # An exception of the run's own code that run_one does not catch (a bug, a full disk): it
        # would happen again, so it is recorded as a failure, not retried.
        cause = exc.cause if getattr(exc, "cause", None) is not None else exc
        record = failed_record(cell, f"{type(cause).__name__}: {cause}", str(exc))
    except RayError as exc:
        # The worker or node died more often than max_retries allowed. The run's checkpoint is kept
        # and no record is written, so the next invocation resumes it.
        record = failed_record(cell, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]} (no retries left; "
                                     "the next invocation resumes from the last checkpoint)")
        record["persisted"] = False
        return record
    persist(record, out)
    return record


def _collect(refs: dict[Any, Cell], out: Path, progress: Progress, report: Report) -> None:
    import ray

    pending = list(refs)
    progress.in_flight = len(pending)
    progress.show(force=True)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1, timeout=WAIT_TICK_S)
        if ready:
            more, pending = ray.wait(pending, num_returns=len(pending), timeout=0)
            ready += more
        for ref in ready:
            cell = refs[ref]
            record = _outcome(ref, cell, out)
            if record is None:  # cancelled from outside this driver
                record = failed_record(cell, "TaskCancelledError: the task was cancelled; the next invocation "
                                             "resumes the run from its last checkpoint")
                record["persisted"] = False
            progress.in_flight -= 1
            report(cell, record)
        progress.show()


def _cancel(refs: dict[Any, Cell], out: Path, report: Report) -> None:
    """Ctrl-C: stop every task that has not ended (a running one's worker is killed: the run keeps its
    last checkpoint and writes no record; ray_session.cancel_and_drain says why it is not interrupted)
    and keep the records of runs that had ended."""

    def ended(ref: Any) -> None:
        record = _outcome(ref, refs[ref], out)
        if record is not None and record.get("persisted", True):  # None: cancelled, resumes next time
            report(refs[ref], record)

    cancel_and_drain([ref for ref, cell in refs.items() if cell.record is None], ended)
