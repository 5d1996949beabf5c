"""Scheduling of the benchmark grid: every cell is one `runner.run_one(config)`, run as a Ray task
(on this machine, its GPUs, or a cluster) or in this process one after another (`ray=False`).

This is the only module that imports Ray, and it imports it lazily, so `--no-ray` never loads it. The
trainer and evaluator know nothing of what is here: a Ray task calls the same `run_one` that runs
in-process, and everything that makes a grid safe to stop and start again lives in `run_one`
(finished runs are skipped, failures are records, an interrupted run leaves its checkpoint and no
record). What this module adds:

- resources per run (CPUs, whole or fractional GPUs, memory, custom resources), so Ray packs runs;
- records streamed as runs end (`ray.wait`), a done/running/failed/pending line with an ETA;
- retries of runs whose worker died (killed, out of memory, node lost): the retry resumes from the
  run's checkpoint because `run_one` does. Errors of the run itself are recorded by `run_one` and
  are not retried;
- per-machine preparation (dataset splits, `Quantizer.prepare` caches) before any run starts, so
  parallel runs never race to build the same cache;
- Ctrl-C: tasks are cancelled, finished runs are listed, and the next invocation resumes the rest.
"""
from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.core import run_folder
from bench.core.atomic import write_json_atomic
from bench.core.errors import UserError
from bench.runs import records
from bench.runs.config import ResolvedRun, RunConfig, resolve
from bench.runs.records import RunRecord, stored_form
from bench.runs.runner import DEFAULT_OUT, finished_record, run_one

Record = dict[str, Any]
OnRecord = Callable[[Record], None]

DEFAULT_MAX_RETRIES = 3  # retries of a run whose worker died; errors of the run itself are never retried
CANCEL_GRACE_S = 10.0  # after Ctrl-C, how long cancelled tasks get to stop before their workers are killed
WAIT_TICK_S = 1.0  # the driver wakes at least this often: progress line, Ctrl-C
# Shipped to the nodes of a cluster with the code (runtime_env working_dir); results and caches stay.
WORKING_DIR_EXCLUDES = [".git", "results", ".make", "**/__pycache__", "*.pyc", ".pytest_cache", ".venv", "venv"]


# ---------------------------------------------------------------------------------------------
# Resources


_MEMORY_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20, "mib": 2**20,
                 "g": 2**30, "gb": 2**30, "gib": 2**30, "t": 2**40, "tb": 2**40, "tib": 2**40}


def parse_memory(text: str | float) -> int:
    """Bytes from `8G`, `512MiB`, `1.5g` or a plain number of bytes (units are binary: G = 2^30)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
        if not m or m.group(2).lower() not in _MEMORY_UNITS:
            raise UserError(f"memory must look like 8G, 512M or a number of bytes, got {text!r}")
        value, unit = float(m.group(1)), m.group(2).lower()
    nbytes = int(value * _MEMORY_UNITS[unit])
    if nbytes < 1:
        raise UserError(f"memory per run must be positive, got {text!r}")
    return nbytes


@dataclass(frozen=True)
class Resources:
    """What one run asks Ray for. Ray only schedules by these numbers; it does not limit a run to them
    (except GPUs: CUDA_VISIBLE_DEVICES), so ask for what a run really uses."""

    cpus: float = 1.0  # also the run's torch thread count (at least 1)
    gpus: float | None = None  # None: 1 when the cluster has GPUs and the run's device is not cpu, else 0.
    # Fractions below 1 pack runs onto one GPU (0.5: two runs per GPU); above 1 must be whole.
    memory: int | None = None  # bytes of Ray's logical `memory` resource; None: not scheduled by memory
    custom: dict[str, float] = field(default_factory=dict)  # custom node resources, e.g. {"A100": 1}

    def __post_init__(self) -> None:
        if not self.cpus > 0:
            raise UserError(f"CPUs per run must be positive, got {self.cpus}")
        if self.gpus is not None:
            if self.gpus < 0:
                raise UserError(f"GPUs per run must be >= 0, got {self.gpus}")
            if self.gpus > 1 and self.gpus != int(self.gpus):
                raise UserError(f"GPUs per run above 1 must be a whole number, got {self.gpus}")
        for name, amount in self.custom.items():
            if not amount > 0:
                raise UserError(f"resource {name!r} per run must be positive, got {amount}")

    def request(self, config: RunConfig, cluster_gpus: float) -> dict[str, float]:
        """The resource dict of one run, Ray's names (CPU, GPU, memory, custom)."""
        gpus = self.gpus
        if gpus is None:
            on_cpu = (config.device or "").startswith("cpu")
            gpus = 1.0 if cluster_gpus > 0 and not on_cpu else 0.0
        req = {"CPU": float(self.cpus), **{k: float(v) for k, v in self.custom.items()}}
        if gpus:
            req["GPU"] = float(gpus)
        if self.memory:
            req["memory"] = float(self.memory)
        return req

    @property
    def threads(self) -> int:
        return max(1, math.floor(self.cpus))


def fits(request: dict[str, float], node: dict[str, float]) -> bool:
    return all(node.get(k, 0.0) + 1e-9 >= v for k, v in request.items())


def capacity(request: dict[str, float], nodes: Sequence[dict[str, float]]) -> int:
    """How many runs with this request fit at once on these nodes (their total resources)."""
    total = 0
    for node in nodes:
        if fits(request, node):
            per = [math.floor(node.get(k, 0.0) / v + 1e-9) for k, v in request.items() if v > 0]
            total += min(per) if per else 1
    return total


# ---------------------------------------------------------------------------------------------
# Planning and preparation (no Ray)


@dataclass
class Cell:
    config: RunConfig
    run_id: str
    run: ResolvedRun
    indices: list[int]  # positions in the caller's list (identical configs share one run)
    record: Record | None = None


def plan_cells(configs: Sequence[RunConfig]) -> list[Cell]:
    """One cell per distinct run id, in first-seen order. Every config is validated before any work
    starts, so a typo in the last one does not waste the others' time. Identical configs become one
    run: two tasks writing the same run folder would race."""
    cells: dict[str, Cell] = {}
    for i, c in enumerate(configs):
        run = resolve(c)
        rid = run.run_id
        if rid in cells:
            cells[rid].indices.append(i)
        else:
            cells[rid] = Cell(c, rid, run, [i])
    return list(cells.values())


def _unfinished(cells: list, out: Path, force: bool, display: "Progress", on_record) -> list:
    """The cells still to run; a finished one (unless `force`) is reported as done at once."""
    todo = []
    for cell in cells:
        done = None if force else finished_record(cell.run, out)
        if done is not None:
            _emit(cell, done, display, on_record, show=False)
        else:
            todo.append(cell)
    return todo


def preparation_steps(cells: Sequence[Cell]) -> list[tuple[str, Callable[[], Any]]]:
    """(label, thunk) for each distinct thing to build before the runs: each dataset split (which
    builds its decoded cache when asked for one) and each method's `Quantizer.prepare` per (method,
    K, dim, options). Runs only read what these build."""
    import datasets
    import methods

    steps: dict[str, tuple[str, Callable[[], Any]]] = {}
    for cell in cells:
        r = cell.run
        name, res, root, options = r.dataset, r.model.resolution, r.config.data_root, r.data_options()
        for split in ("train", "val"):  # the same calls run_one makes
            # The crop seed changes how images are read, never what is cached: one call per seed-less key.
            key = json.dumps(["data", name, split, res, root, {k: v for k, v in options.items() if k != "seed"}],
                             sort_keys=True, default=str)
            steps.setdefault(key, (f"dataset {name} {split} {res}px", lambda n=name, s=split, x=res, o=root, kw=options:
                                   datasets.create(n, s, x, o, **kw)))
        dim = r.model.embed_dim
        key = json.dumps(["method", r.method, r.codebook_size, dim, r.to_dict()["method_options"]], sort_keys=True,
                         default=str)
        cls = methods.entry(r.method).cls
        steps.setdefault(key, (f"method {r.method} K={r.codebook_size}",
                               lambda c=cls, k=r.codebook_size, d=dim, o=r.method_options: c.prepare(k, d, o)))
    return list(steps.values())


def prepare_here(cells: Sequence[Cell]) -> list[str]:
    """Build everything the cells need on this machine, one thing at a time. A step that fails is
    reported (returned) and skipped: the runs that need it fail the same way and record why, while
    the other runs go on."""
    problems = []
    for label, thunk in preparation_steps(cells):
        try:
            thunk()
        except Exception as exc:  # noqa: BLE001 - recorded by the runs themselves; see docstring
            problems.append(f"preparing {label} failed: {type(exc).__name__}: {exc}")
    return problems


# ---------------------------------------------------------------------------------------------
# Progress


class Progress:
    """`grid: 3/8 done (1 failed, 2 skipped) | 2 running, 3 pending | 1m20s elapsed, ETA 2m10s`.

    Rewritten in place on a terminal, one line per change otherwise (logs). "running" is the number
    of runs in flight that fit the cluster at once; the rest of the in-flight runs wait in Ray's queue.
    The ETA is the remaining runs times the mean time per completed run of this invocation (runs
    completed concurrently count in parallel, so it is wall time, not run time)."""

    def __init__(self, total: int, enabled: bool, stream: Any = None, in_place: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.in_place = self.stream.isatty() if in_place is None else in_place
        self.total, self.finished, self.failed, self.skipped, self.in_flight, self.slots = total, 0, 0, 0, 0, 1
        self.t0 = time.monotonic()
        self.completed_here = 0
        self._shown = ""

    def line(self) -> str:
        done = self.finished + self.failed
        running = min(self.in_flight, self.slots)
        pending = self.total - done - running
        elapsed = time.monotonic() - self.t0
        remaining = self.total - done
        if remaining == 0:
            eta = "done"
        elif self.completed_here:
            eta = "ETA " + _duration(elapsed / self.completed_here * remaining)
        else:
            eta = "ETA ?"
        extra = ", ".join(x for x in (f"{self.failed} failed" if self.failed else "",
                                      f"{self.skipped} skipped" if self.skipped else "") if x)
        return (f"grid: {done}/{self.total} done" + (f" ({extra})" if extra else "")
                + f" | {running} running, {pending} pending | {_duration(elapsed)} elapsed, {eta}")

    def show(self, force: bool = False) -> None:
        if not self.enabled:
            return
        text = self.line()
        if self.in_place:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
        elif force or text.split(" | ")[:2] != self._shown.split(" | ")[:2]:
            self.stream.write(text + "\n")
            self.stream.flush()
        self._shown = text

    def clear(self) -> None:
        if self.enabled and self.in_place and self._shown:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def count(self, record: Record) -> None:
        if record.get("skipped"):
            self.skipped += 1
            self.finished += 1
            return
        self.completed_here += 1
        if record.get("status") == records.FINISHED:
            self.finished += 1
        else:
            self.failed += 1

    def close(self) -> None:
        if self.enabled and self.in_place and self._shown:
            self.stream.write("\n")
            self.stream.flush()


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


# ---------------------------------------------------------------------------------------------
# Records on the driver


def persist(record: Record, out: Path) -> None:
    """Make sure the driver's results folder holds the record. On one machine, or a cluster sharing
    the results folder, the worker already wrote it; on nodes with their own disks it did not, and
    the table at the end reads the driver's folder."""
    path = run_folder.runs_dir(out) / record["run_id"] / run_folder.RECORD
    stored = stored_form(record)
    if records.read_record(path.parent) != stored:
        write_json_atomic(path, stored)


def failed_record(cell: Cell, error: str, tb: str | None = None) -> Record:
    """A failure `run_one` could not record itself: its worker died, or it was cancelled."""
    from bench.evaluation.metrics import keys

    return RunRecord.failed(cell.run_id, cell.run.to_dict(), error, tb, metric_keys=keys.RECORD_METRICS,
                            data_root=cell.config.data_root).to_json()


def _describe(cell: Cell) -> str:
    return cell.run.describe()


# ---------------------------------------------------------------------------------------------
# In-process (--no-ray)


def run_in_process(configs: Sequence[RunConfig], out: Path | str = DEFAULT_OUT, force: bool = False,
                   progress: bool = True, on_record: OnRecord | None = None,
                   on_checkpoint: Callable[[int], None] | None = None) -> list[Record]:
    """The same jobs as `run_grid`, one after another in this process (for debugging: breakpoints,
    profilers, plain tracebacks)."""
    out = Path(out)
    cells = plan_cells(configs)
    display = Progress(len(cells), progress, in_place=False)  # the per-run bars own the terminal line
    todo = _unfinished(cells, out, force, display, on_record)
    for problem in prepare_here(todo):
        print(f"warning: {problem}", file=sys.stderr, flush=True)
    if not todo:
        display.show(force=True)
    try:
        for cell in todo:
            display.in_flight = 1
            display.show()
            record = run_one(cell.config, out, force=force, progress=progress, on_checkpoint=on_checkpoint)
            display.in_flight = 0
            _emit(cell, record, display, on_record)
    except KeyboardInterrupt:
        _print_interrupted(cells)
        raise
    return _in_caller_order(configs, cells)


def _emit(cell: Cell, record: Record, display: Progress, on_record: OnRecord | None, show: bool = True) -> None:
    cell.record = record
    display.count(record)
    display.clear()
    if on_record is not None:
        on_record(record)
    if show:
        display.show(force=True)


def _in_caller_order(configs: Sequence[RunConfig], cells: Sequence[Cell]) -> list[Record]:
    out: list[Record | None] = [None] * len(configs)
    for cell in cells:
        for i in cell.indices:
            out[i] = cell.record
    return [r for r in out if r is not None]


def _print_interrupted(cells: Sequence[Cell]) -> None:
    done = [c for c in cells if c.record is not None and not c.record.get("skipped")]
    left = [c for c in cells if c.record is None]
    lines = [f"interrupted: {len(done)} run(s) ended in this invocation and are saved, {len(left)} did not end."]
    lines += [f"  {c.record['status']:<8} {_describe(c)} ({c.run_id})" for c in done]  # type: ignore[index]
    if left:
        lines.append("  Run the same command again: finished runs are skipped and interrupted ones resume from "
                     "their last checkpoint.")
    print("\n".join(lines), file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Ray


def _repo_root() -> str:
    return str(records.REPO_ROOT)


def _worker_setup(threads: int, imports: Sequence[str]) -> None:
    """Inside a Ray worker, before any run: the project's `datasets` (not Hugging Face's) must be the
    one imported, torch gets the run's CPU share as threads, and extra modules register themselves."""
    import importlib

    import torch

    import datasets as project_datasets

    root = records.REPO_ROOT
    if Path(project_datasets.__file__).resolve().parent.parent != root:
        raise ImportError(f"the Ray worker imported `datasets` from {project_datasets.__file__}, not from the "
                          f"project at {root}: the repository root must come first on sys.path (PYTHONPATH)")
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    for name in imports:
        importlib.import_module(name)


def _run_task(config: RunConfig, out: str, force: bool, threads: int, imports: Sequence[str],
              on_checkpoint: Callable[[int], None] | None) -> tuple[Record, dict[str, Any]]:
    """One grid cell in a Ray worker: `run_one`, without per-run progress bars."""
    import ray

    _worker_setup(threads, imports)
    record = run_one(config, out, force=force, progress=False, on_checkpoint=on_checkpoint)
    ctx = ray.get_runtime_context()
    return record, {"node_id": ctx.get_node_id(), "node_ip": ray.util.get_node_ip_address(), "pid": os.getpid()}


def _prepare_task(configs: Sequence[RunConfig], imports: Sequence[str]) -> tuple[str, list[str]]:
    import ray

    _worker_setup(1, imports)
    return ray.get_runtime_context().get_node_id(), prepare_here(plan_cells(configs))


@dataclass
class _Session:
    started: bool  # this call started Ray (and shuts it down at the end)
    local: bool  # a Ray instance of this machine only


def connect(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None) -> _Session:
    """Use the Ray session this process already has, else join `address` ("auto" or HOST:PORT)
    shipping the code to the nodes, else start a local Ray instance sized to this machine (or to
    num_cpus/num_gpus) whose workers import the code from this checkout."""
    import ray

    if ray.is_initialized():
        return _Session(False, len(ray.nodes()) == 1)
    if address:
        if num_cpus is not None or num_gpus is not None:
            raise UserError("--num-cpus/--num-gpus size a local Ray instance; a cluster joined with "
                            "--ray-address has the resources its nodes were started with")
        # Nodes may not have this checkout: the code travels with the job (results and caches do not).
        ray.init(address=address, runtime_env={"working_dir": _repo_root(), "excludes": WORKING_DIR_EXCLUDES,
                                               "env_vars": _forwarded_env()}, log_to_driver=True)
        return _Session(True, False)
    # A local instance writes no auth token (the project's default, see OFFLINE notes); "local" starts
    # our own instance even when a `ray start` cluster runs on this machine.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
             runtime_env={"env_vars": {"PYTHONPATH": _pythonpath()}}, log_to_driver=True)
    return _Session(True, True)


FORWARDED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "NLTK_DATA", "TORCH_HOME")  # and every VQBENCH_*


def _forwarded_env() -> dict[str, str]:
    """Settings the driver was given that the workers on other nodes must see the same way (data
    root, cache folder, offline switches). Local workers inherit the driver's environment anyway."""
    return {k: v for k, v in os.environ.items() if k.startswith("VQBENCH_") or k in FORWARDED_ENV}


def _pythonpath() -> str:
    """The repository root first (its `datasets/` must shadow Hugging Face `datasets`), then any
    PYTHONPATH the caller had."""
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != _repo_root()]
    return os.pathsep.join([_repo_root(), *rest])


def _task_runtime_env() -> dict[str, Any] | None:
    """In a session the caller started (tests, notebooks) without shipping the code, point the
    workers at this checkout."""
    import ray

    job_env = ray.get_runtime_context().runtime_env or {}
    if job_env.get("working_dir") or job_env.get("py_modules"):
        return None
    if _repo_root() in (job_env.get("env_vars") or {}).get("PYTHONPATH", "").split(os.pathsep)[:1]:
        return None
    return {"env_vars": {"PYTHONPATH": _pythonpath()}}


def _alive_nodes() -> list[dict[str, Any]]:
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


def run_grid(configs: Sequence[RunConfig], out: Path | str = DEFAULT_OUT, force: bool = False, progress: bool = True,
             on_record: OnRecord | None = None, *, address: str | None = None, num_cpus: int | None = None,
             num_gpus: int | None = None, resources: Resources | None = None,
             max_retries: int = DEFAULT_MAX_RETRIES, on_checkpoint: Callable[[int], None] | None = None,
             worker_imports: Sequence[str] = ()) -> list[Record]:
    """Run every config as a Ray task and return the records in the order of `configs`.

    `on_record` sees each record as its run ends (finished runs skipped at the start first).
    `address`: join a cluster ("auto" or HOST:PORT); default: a local instance sized to this machine,
    or `num_cpus`/`num_gpus`. `resources`: what each run asks for. `max_retries`: how often a run
    whose worker died is started again (from its checkpoint). `on_checkpoint(step)` runs in the worker
    after each checkpoint (picklable; tests inject faults with it). `worker_imports`: modules every
    worker imports first (to register methods or datasets that live outside the project).
    """
    import ray

    out = Path(out).resolve()  # workers on other machines need the driver's absolute path
    resources = resources or Resources()
    if max_retries < 0:
        raise UserError(f"max retries must be >= 0, got {max_retries}")
    cells = plan_cells(configs)
    display = Progress(len(cells), progress)
    todo = _unfinished(cells, out, force, display, on_record)
    if not todo:
        display.show(force=True)
        display.close()
        return _in_caller_order(configs, cells)

    session = connect(address, num_cpus, num_gpus)
    try:
        nodes = _alive_nodes()
        cluster_gpus = sum(n["Resources"].get("GPU", 0.0) for n in nodes)
        requests = {cell.run_id: resources.request(cell.config, cluster_gpus) for cell in todo}
        _check_feasible(requests.values(), nodes, strict=session.local)
        _prepare(todo, requests, nodes, worker_imports)
        runtime_env = _task_runtime_env()
        refs: dict[Any, Cell] = {}
        for cell in todo:
            refs[_submit(cell, requests[cell.run_id], out, force, resources.threads, max_retries, worker_imports,
                         on_checkpoint, runtime_env)] = cell
        # "running" on the progress line: how many of the in-flight runs fit at once (the largest request decides)
        display.slots = max(1, min(capacity(r, [n["Resources"] for n in nodes]) for r in requests.values()))
        try:
            _collect(refs, out, display, on_record)
        except KeyboardInterrupt:
            display.clear()
            _cancel(refs, out, display, on_record)
            _print_interrupted(cells)
            raise
    finally:
        display.close()
        if session.started:
            ray.shutdown()
    return _in_caller_order(configs, cells)


def _check_feasible(requests: Any, nodes: list[dict[str, Any]], strict: bool) -> None:
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


def _prepare(cells: list[Cell], requests: dict[str, dict[str, float]], nodes: list[dict[str, Any]],
             imports: Sequence[str]) -> None:
    """Build datasets and method caches once per machine before any run starts. On a one-machine
    Ray this happens here, in the driver. On a cluster each node that can host a run gets a small
    task with the configs it may run: the first node alone, then the others together, so that nodes
    sharing a filesystem find the caches built and nodes with their own disks build in parallel
    without racing (a run never builds a shared cache while another reads it)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    hosts = [n for n in nodes if any(fits(r, n["Resources"]) for r in requests.values())]
    if not hosts or all(n["NodeID"] == here for n in hosts):
        problems = prepare_here(cells)
    else:
        def launch(node: dict[str, Any]) -> Any:
            mine = [c.config for c in cells if fits(requests[c.run_id], node["Resources"])]
            return ray.remote(_prepare_task).options(
                num_cpus=min(1.0, node["Resources"].get("CPU", 0.0)), max_retries=1, runtime_env=_task_runtime_env(),
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
            ).remote(mine, list(imports))

        first = ray.get(launch(hosts[0]))
        rest = ray.get([launch(n) for n in hosts[1:]])
        problems = sorted({p for _, node_problems in [first, *rest] for p in node_problems})
    for p in problems:
        print(f"warning: {p}", file=sys.stderr, flush=True)


_REMOTE: dict[bool, Any] = {}


def _remote_run_task(uses_gpu: bool) -> Any:
    """`_run_task` as a Ray remote function (made once per process). A GPU run gets a fresh worker
    process (max_calls=1), so its CUDA memory is returned when it ends; `max_calls` cannot be set
    per call, hence two remote functions."""
    import ray

    if uses_gpu not in _REMOTE:
        _REMOTE[uses_gpu] = ray.remote(max_calls=1)(_run_task) if uses_gpu else ray.remote(_run_task)
    return _REMOTE[uses_gpu]


def _submit(cell: Cell, req: dict[str, float], out: Path, force: bool, threads: int, max_retries: int,
            imports: Sequence[str], on_checkpoint: Callable[[int], None] | None, runtime_env: dict | None) -> Any:

    gpus = req.get("GPU", 0.0)
    custom = {k: v for k, v in req.items() if k not in ("CPU", "GPU", "memory")}
    remote = _remote_run_task(bool(gpus))
    options: dict[str, Any] = dict(num_cpus=req["CPU"], num_gpus=gpus, max_retries=max_retries,
                                   retry_exceptions=False, name=f"vqbench:{cell.run_id}")
    if "memory" in req:
        options["memory"] = int(req["memory"])
    if custom:
        options["resources"] = custom
    if runtime_env:
        options["runtime_env"] = runtime_env
    return remote.options(**options).remote(cell.config, str(out), force, threads, list(imports), on_checkpoint)


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


def _collect(refs: dict[Any, Cell], out: Path, display: Progress, on_record: OnRecord | None) -> None:
    import ray

    pending = list(refs)
    display.in_flight = len(pending)
    display.show(force=True)
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
            display.in_flight -= 1
            _emit(cell, record, display, on_record)
        display.show()


def _cancel(refs: dict[Any, Cell], out: Path, display: Progress, on_record: OnRecord | None) -> None:
    """Ctrl-C: cancel every task that has not ended (a running one gets KeyboardInterrupt, so run_one
    writes no record and keeps its checkpoint), keep the records of runs that end meanwhile, and kill
    what is still running after CANCEL_GRACE_S. A second Ctrl-C skips the wait."""
    import ray

    pending = [ref for ref, cell in refs.items() if cell.record is None]
    for ref in pending:
        ray.cancel(ref, force=False)
    deadline = time.monotonic() + CANCEL_GRACE_S
    try:
        while pending and time.monotonic() < deadline:
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=0.5)
            for ref in ready:
                record = _outcome(ref, refs[ref], out)
                if record is not None and record.get("persisted", True):  # None: cancelled, resumes next time
                    _emit(refs[ref], record, display, on_record)
    except KeyboardInterrupt:
        pass
    for ref in pending:
        try:
            ray.cancel(ref, force=True)
        except Exception:  # noqa: BLE001 - best effort; shutting Ray down ends the rest
            pass
