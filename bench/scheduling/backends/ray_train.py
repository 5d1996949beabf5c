"""`ray-train`: every cell as one data-parallel run on N workers, a Ray Train `TorchTrainer` fit.

N is the run's own `RunConfig.workers` (`--workers-per-run N`): the preset's global batch is split
into N workers x accumulation x micro-batch, so the run id and the result are those of one worker
accumulating (bench/runs/config.py). Each worker asks for what `resources` says (per worker: CPUs,
also its torch threads; GPUs, then the group speaks NCCL, else gloo) and calls the same job function
as every backend (bench.scheduling.plan.run_job); inside, the trainer joins the group Ray Train
initialised (bench.training.replicas.current), rank 0 writes the checkpoints and the record, and
every rank resumes from rank 0's checkpoint, so the run folder (`--out`) must be one that the driver
and every worker share. A released-checkpoint evaluation (`run_bench.py eval`) has no training to
split: it runs as a fit of one worker.

The driver reads the record from the run folder (a fit returns no metrics) and decides what an
ended fit means:
- rank 0 wrote a record (finished, or failed in evaluation): that is the run's record;
- a worker or its node was lost (killed, out of memory; Ray reports it as its own error type): the
  whole group is started again, up to `max_retries` times, and resumes from rank 0's checkpoint; when
  the retries are spent the run is reported failed without writing a record (as with the `ray`
  backend), so the next invocation resumes it;
- a worker raised an error of the run's own code (a NaN loss, an unreadable image): a failed record
  with that error, not retried (it would happen again).
Cells run one after another, each on its N workers. Ctrl-C aborts the fit in flight (its workers are
killed, the run keeps its checkpoint and writes no record), releases what it started and re-raises.
Ray is imported inside the functions, so importing this module (which registering it does) never
loads it.
"""
from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.core import run_folder
from bench.core.errors import UserError
from bench.runs import records
from bench.runs.config import RunConfig
from bench.scheduling.backends import Record, Report, register_backend
from bench.scheduling.backends.ray import RayBackend, check_feasible, prepare_nodes
from bench.scheduling.backends.ray_session import CANCEL_GRACE_S, alive_nodes, connect, task_runtime_env
from bench.scheduling.driver_records import failed_record, persist
from bench.scheduling.gpu_fit import check_gpu_memory
from bench.scheduling.plan import Cell
from bench.scheduling.progress import Progress
from bench.scheduling.resources import capacity

# torch.distributed's timeout for the group's collectives. The other ranks wait at a barrier while
# rank 0 alone evaluates (an hour or more on a large validation split), and a lost worker is noticed
# by Ray Train's health checks, not by this timeout, so it is long.
GROUP_TIMEOUT_S = 24 * 3600
# Errors of a lost peer as the surviving ranks see them (gloo, NCCL): a consequence, not a cause.
PEER_LOST_MARKERS = ("Connection closed by peer", "Connection reset by peer", "ncclRemoteError",
                     "NCCL communicator was aborted")
RECORD, RETRY, FAILED = "record", "retry", "failed"


def workers_of(job: Any) -> int:
    """The group size of a job: a training run's `workers`; one for any other job (an evaluation)."""
    return int(job.workers) if isinstance(job, RunConfig) else 1


def train_worker(config: dict[str, Any]) -> None:
    """One worker of a run's group (Ray Train calls it on every worker, torch.distributed initialised)."""
    import ray.train.torch

    from bench.scheduling.backends.ray_tasks import worker_setup
    from bench.scheduling.plan import run_job

    worker_setup(config["threads"], config["imports"])
    job = config["job"]
    if config["uses_gpu"] and isinstance(job, RunConfig) and not (job.device or "").startswith("cpu"):
        # Ray Train shows a worker every GPU of its node; "cuda" alone would put every rank on the first.
        job = dataclasses.replace(job, device=str(ray.train.torch.get_device()))
    run_job(job, config["out"], force=config["force"], progress=False, on_checkpoint=config["on_checkpoint"])


def judge(error: BaseException | None, written: Record | None) -> tuple[str, str | None]:
    """What an ended fit means (module docstring): (RECORD, None) when rank 0 wrote the record in this
    attempt; (RETRY, why) when a worker or node was lost; (FAILED, error) for an error of the run's own
    code, or for a fit that ended without a record (then `error` is None: the caller names the folder)."""
    if written is not None:
        return RECORD, None
    if error is None:
        return FAILED, None
    failures: dict[int, BaseException] = getattr(error, "worker_failures", None) or {}
    if not failures:  # the controller itself failed, or no worker said why: nothing of the run's own
        return RETRY, _first_line(error)
    # A worker Ray saw die names the cause; the connection errors of the ranks it left are consequences.
    lost = {rank: e for rank, e in failures.items() if _ray_error(e)} or \
        {rank: e for rank, e in failures.items() if _peer_lost(e)}
    if lost:
        rank = min(lost)
        return RETRY, f"worker {rank}: {_first_line(lost[rank])}"
    rank = min(failures)
    return FAILED, f"{type(failures[rank]).__name__}: {failures[rank]} (on worker {rank})"


def _ray_error(error: BaseException) -> bool:
    """Ray's own error types (actor died, health check failed, node lost): a worker was lost; the
    run's own code never raises them."""
    from ray.exceptions import RayError

    return isinstance(error, RayError) or type(error).__module__.split(".")[0] == "ray"


def _peer_lost(error: BaseException) -> bool:
    """A rank that only saw its peer go: a connection error inside a collective."""
    return any(marker in str(error) for marker in PEER_LOST_MARKERS)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else 'no detail'}"


@register_backend("ray-train")
class RayTrainBackend(RayBackend):
    """`address`, `num_cpus`, `num_gpus`, `worker_imports`, `on_checkpoint`: as the `ray` backend's.
    `resources`: what each WORKER asks for (a run on N workers asks N times that). `max_retries`:
    how often a run's group is started again after losing a worker, each time from rank 0's
    checkpoint."""

    summary = "trains each run on --workers-per-run data-parallel workers (Ray Train), one run at a time"

    # The constructor, its options and their checks are the ray backend's (RayBackend.__init__): the CLI
    # passes both the same scheduling flags; only `run` differs.

    def run(self, cells: Sequence[Cell], out: Path, force: bool, progress: Progress, report: Report) -> None:
        import ray

        out = Path(out).resolve()  # workers on other machines need the driver's absolute path
        session = connect(self.address, self.num_cpus, self.num_gpus)
        storage = tempfile.mkdtemp(prefix="vqbench-ray-train-")  # Ray Train's own bookkeeping, not the runs'
        try:
            nodes = alive_nodes()
            cluster_gpus = sum(n["Resources"].get("GPU", 0.0) for n in nodes)
            requests = {cell.run_id: self.resources.request(cell.config, cluster_gpus) for cell in cells}
            check_feasible(requests.values(), nodes, strict=session.local)
            _check_groups(cells, requests, nodes, strict=session.local)
            if session.local:  # this machine's GPUs are the workers' (a cluster's nodes may have others)
                check_gpu_memory([(cell.run, requests[cell.run_id].get("GPU", 0.0)) for cell in cells])
            prepare_nodes(cells, requests, nodes, self.worker_imports)
            progress.slots = 1
            for cell in cells:
                progress.in_flight = 1
                progress.show(force=True)
                record = self._run_cell(cell, requests[cell.run_id], out, force, storage)
                progress.in_flight = 0
                report(cell, record)
        except KeyboardInterrupt:
            progress.clear()
            raise
        finally:
            shutil.rmtree(storage, ignore_errors=True)
            if session.started:
                ray.shutdown()

    def _run_cell(self, cell: Cell, req: dict[str, float], out: Path, force: bool, storage: str) -> Record:
        """Fit the cell's group until it leaves a record, an error of its own or no retries."""
        run_dir = run_folder.run_dir(out, cell.run_id)
        lost = None
        for attempt in range(self.max_retries + 1):
            before = records.read_record(run_dir)
            # Only the first attempt may start over (`force`); a restart must resume the checkpoint.
            trainer = self._trainer(cell, req, out, force and attempt == 0, storage, attempt)
            error: BaseException | None = None
            try:
                trainer.fit()
            except KeyboardInterrupt:
                _abort(trainer)
                raise
            except Exception as exc:  # noqa: BLE001 - judged below: lost worker, or the run's own error
                error = exc
            now = records.read_record(run_dir)
            verdict, why = judge(error, now if now is not None and now != before else None)
            if verdict == RECORD:
                persist(now, out)
                return now
            if verdict == FAILED:
                why = why or (f"RuntimeError: the workers ended without a record in {run_dir}; --out must be a "
                              "folder that the driver and every worker share")
                record = _with_optimization(failed_record(cell, why, str(error) if error else None), cell)
                persist(record, out)
                return record
            lost = why
            if attempt < self.max_retries:
                print(f"warning: {cell.run.describe()}: lost {why}; restarting its {workers_of(cell.config)} "
                      f"worker(s) from the last checkpoint (retry {attempt + 1} of {self.max_retries})",
                      file=sys.stderr, flush=True)
        record = _with_optimization(failed_record(
            cell, f"lost {lost} (no retries left; the next invocation resumes from the last checkpoint)"), cell)
        record["persisted"] = False
        return record

    def _trainer(self, cell: Cell, req: dict[str, float], out: Path, force: bool, storage: str, attempt: int) -> Any:
        from ray.train import FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig

        gpus = req.get("GPU", 0.0)
        per_worker = {k: v for k, v in req.items() if k != "GPU"}
        if gpus:
            per_worker["GPU"] = gpus
        loop_config = {"job": cell.config, "out": str(out), "force": force, "threads": self.resources.threads,
                       "imports": self.worker_imports, "on_checkpoint": self.on_checkpoint, "uses_gpu": bool(gpus)}
        # Retries are ours (judge): Ray Train's would also restart a group that failed by its own error.
        run_config = RunConfig(name=f"{cell.run_id}-attempt{attempt}", storage_path=storage,
                               failure_config=FailureConfig(max_failures=0),
                               worker_runtime_env=task_runtime_env() or {})
        return _trainer_class()(train_worker, train_loop_config=loop_config,
                                scaling_config=ScalingConfig(num_workers=workers_of(cell.config), use_gpu=bool(gpus),
                                                             resources_per_worker=per_worker),
                                torch_config=TorchConfig(timeout_s=GROUP_TIMEOUT_S), run_config=run_config)


def _check_groups(cells: Sequence[Cell], requests: dict[str, dict[str, float]], nodes: list[dict[str, Any]],
                  strict: bool) -> None:
    """A run's N workers must fit on the cluster at once, or its fit waits for ever; and NCCL needs a
    GPU of its own per worker (two ranks on one GPU fail)."""
    for cell in cells:
        n, room = workers_of(cell.config), capacity(requests[cell.run_id], [node["Resources"] for node in nodes])
        gpus = requests[cell.run_id].get("GPU", 0.0)
        if n > 1 and gpus and gpus != int(gpus):
            raise UserError(f"--gpus-per-run {gpus:g} with --workers-per-run {n}: each data-parallel worker needs "
                            "whole GPUs (NCCL cannot put two ranks on one GPU); use --gpus-per-run 1")
        if n > room:
            msg = (f"{cell.run.describe()} needs {n} workers of {requests[cell.run_id]} at once, and the Ray nodes "
                   f"have room for {room}")
            if strict:
                raise UserError(msg + "; lower --workers-per-run or --cpus-per-run/--gpus-per-run, or join a cluster "
                                "with --ray-address")
            print(f"warning: {msg}; the run waits until more nodes join", file=sys.stderr, flush=True)


def _with_optimization(record: Record, cell: Cell) -> Record:
    """A driver-made failed record still says how the global batch was split."""
    if hasattr(cell.run, "optimization"):
        record["optimization"] = cell.run.optimization()
    return record


def _abort(trainer: Any) -> None:
    """Ctrl-C during a fit: abort its controller, which kills the workers (the run keeps its
    checkpoint and writes no record). A second Ctrl-C skips the wait."""
    import ray

    controller = getattr(trainer, "controller", None)
    if controller is None:
        return
    try:
        ray.get(controller.abort.remote(), timeout=CANCEL_GRACE_S)
    except (KeyboardInterrupt, Exception):  # noqa: BLE001, S110 - best effort; shutting Ray down ends the rest
        pass


_TRAINER: list[type] = []


def _trainer_class() -> type:
    """TorchTrainer, keeping its controller instead of installing Ray Train's SIGINT handler: that
    handler exits the process on the first Ctrl-C and stays installed after the fit, where the grid
    driver needs its KeyboardInterrupt (to list what ended and exit 130)."""
    if not _TRAINER:
        from ray.train.torch import TorchTrainer

        class Trainer(TorchTrainer):
            controller: Any = None

            def _register_sigint_handler(self, controller: Any) -> None:
                self.controller = controller

        _TRAINER.append(Trainer)
    return _TRAINER[0]
