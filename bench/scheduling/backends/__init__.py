"""Scheduling backends: what executes the cells of a grid once the driver (bench/scheduling/grid.py)
has validated them and set the finished ones aside. `local` runs them one after another in this
process; `ray` runs each as a Ray task on this machine or a cluster; `ray-train` trains each on
`RunConfig.workers` data-parallel workers, one Ray Train fit per run. Only the `ray*` modules import
Ray, and only inside functions, so choosing `local` never loads it.

A backend is a class registered by name. Its constructor's keyword arguments are its options
(`run_grid(..., backend="ray", max_retries=2)` becomes `RayBackend(max_retries=2)`; an option it
does not take is a TypeError naming it), and it has a `summary` and one method, `run` (see
`Backend`). The driver owns everything else: planning, skipping finished runs, the records' order,
the `on_record` callback, the status line's counts and the Ctrl-C summary.

Adding a backend is one new file plus its import line at the end of this module; nothing else
changes. `ray_train.py` was added so: it reuses the ray backend's session and preparation helpers
(ray_session.connect, ray.prepare_nodes) unchanged, and every worker runs the same job function
as every backend (bench.scheduling.plan.run_job). The smallest example, runs in a few worker
processes without Ray, is in docs/scheduling.md ("Backends: adding one").

The CLI passes the scheduling flags (--ray-address, --cpus-per-run, ...) whose option names the
backend's constructor takes, and refuses the others with one line.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

from bench.core.registry import Registry
from bench.scheduling.plan import Cell
from bench.scheduling.progress import Progress

Record = dict[str, Any]
# The driver's callback for one ended run: sets `cell.record`, counts it on the status line, passes
# it to the caller's `on_record` and redraws the line. Call it once per cell, as each run ends.
Report = Callable[[Cell, Record], None]


class Backend(Protocol):
    summary: ClassVar[str]  # what it does, as a verb phrase: "runs in this process" (CLI help and errors)

    def run(self, cells: Sequence[Cell], out: Path, force: bool, progress: Progress, report: Report) -> None:
        """Run every cell (none of them finished, unless `force`) with `run_one` or its equivalent
        and `report` each record as its run ends. Prepare what the runs read once per machine first
        (bench.scheduling.prepare). Keep `progress.in_flight` (and `progress.slots`, the runs that
        can go at once) current and call `progress.show()` while waiting. On KeyboardInterrupt,
        stop the runs so that they leave their checkpoints and no record, report those that ended
        meanwhile, release what the backend started and re-raise: the driver prints the summary.
        Return when every cell has been reported."""
        ...


def _check(name: str, cls: Any) -> None:
    if not isinstance(cls, type) or not callable(getattr(cls, "run", None)) \
            or not isinstance(getattr(cls, "summary", None), str):
        raise TypeError(f"backend {name!r} must be a class with a `summary` string and a "
                        "`run(cells, out, force, progress, report)` method")


registry: Registry[type] = Registry("backend", check=_check)


def register_backend(name: str, aliases: tuple[str, ...] = ()) -> Callable[[type], type]:
    """Class decorator: register a backend under `name`."""
    return registry.register(name, aliases)


def available() -> list[str]:
    return registry.names()


def summary(name: str) -> str:
    return registry.get(name).summary


def option_names(name: str) -> set[str] | None:
    """The options (constructor keywords) of a backend; None when it takes any (**kwargs)."""
    params = inspect.signature(registry.get(name)).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def create(name: str, **options: Any) -> Backend:
    """The backend `name` with these options. An unknown name is a UserError with suggestions; an
    option the backend does not take is a TypeError that names it and the options it does take."""
    cls = registry.get(name)
    accepted = option_names(name)
    unknown = sorted(set(options) - accepted) if accepted is not None else []
    if unknown:
        takes = ", ".join(sorted(accepted)) if accepted else "none"
        raise TypeError(f"backend {registry.canonical(name)!r} does not take {', '.join(unknown)} "
                        f"(its options: {takes})")
    return cls(**options)


# The built-in backends register themselves on import; a new backend adds its line here.
from bench.scheduling.backends import local, ray  # noqa: F401
from bench.scheduling.backends import ray_train  # noqa: F401
