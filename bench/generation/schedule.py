"""`run_bench.py --generate`: a token prior for every tokenizer cell of a grid, each started as soon
as its tokenizer's record exists.

Why the `on_record` callback and not a change to the backends: the grid's driver
(bench.scheduling.grid.run_grid) calls it once per tokenizer record, as each run ends, with every
backend, including the finished runs it skips at the start. So the dependency "a prior starts when
its tokenizer has a record" is kept here, in one place, and no backend knows of priors:

- `local` (and any backend that is not Ray-based): the prior runs in this process inside the
  callback, so the next tokenizer starts after it. Same breakpoints and tracebacks as `--no-ray`.
- Ray-based backends: the callback submits the prior as a Ray task (bench.scheduling.backends.ray_priors) and
  returns at once, so priors train while the remaining tokenizers do. This module opens the Ray
  session before the grid (a backend shuts down only a session it started itself, so the prior tasks
  outlive the tokenizers' part), waits for the priors after it and then closes the session.

In the driver, before any task: a prior whose record is finished is skipped (unless `force`), and a
tokenizer without a finished record gets its prior's "skipped" record from `run_prior` directly (it
returns before loading anything), so a failed tokenizer never shows up as a failed prior. The
resume itself (tokens cached, training from the last checkpoint, sampled batches kept) is
`run_prior`'s.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.core import run_folder
from bench.core.errors import UserError
from bench.generation import folder
from bench.generation.config import PRIOR_PRESETS, PriorConfig, prior_preset
from bench.generation.record import FINISHED, read_prior_record
from bench.runs import records
from bench.runs.config import RunConfig, resolve

Record = dict[str, Any]
OnRecord = Callable[[Record], None]


def prior_for_flags(generate: bool, prior_preset_name: str | None, tokenizer_preset: str | None) -> PriorConfig | None:
    """The prior config of `--generate [--prior-preset NAME]`, None without `--generate`. Without
    `--prior-preset` the prior preset of the tokenizer preset's name (config.py names them so). A
    UserError, before any work, for an unknown name or `--prior-preset` alone."""
    if not generate:
        if prior_preset_name is not None:
            raise UserError(f"--prior-preset {prior_preset_name} has no effect without --generate; add --generate "
                            "or drop --prior-preset")
        return None
    if prior_preset_name is None:
        if tokenizer_preset is None:  # the tokenizer preset the runs will get (bench.runs.presets)
            from bench.runs.presets import default_preset

            tokenizer_preset = default_preset()
        if tokenizer_preset not in PRIOR_PRESETS:
            raise UserError(f"--generate: no prior preset is named after tokenizer preset {tokenizer_preset!r}; "
                            f"choose one with --prior-preset ({', '.join(PRIOR_PRESETS)})")
        prior_preset_name = tokenizer_preset
    return prior_preset(prior_preset_name)


def is_ray_backend(backend: str) -> bool:
    """Whether a backend runs its cells on Ray (its module is one of bench/scheduling/backends/ray*,
    the only ones that import Ray): then priors go to the same Ray session as Ray tasks."""
    from bench.scheduling import backends

    return backends.registry.get(backend).__module__.rpartition(".")[2].startswith("ray")


@dataclass
class PriorJobs:
    """The priors of one grid: what each needs, and their records in the order their tokenizers ended."""

    prior: PriorConfig
    out: Path
    force: bool
    progress: bool
    by_run_id: dict[str, RunConfig]  # the tokenizer configs, for the device and the data location
    on_prior_record: OnRecord | None
    submit: Callable[[Path, RunConfig, str], None] | None = None  # Ray: start a task; None: run here
    records: list[Record] = field(default_factory=list)

    def prior_id(self, run_id: str) -> str:
        return folder.prior_id(run_id, self.prior.preset, self.prior.seed, self.prior.to_dict())

    def after_tokenizer(self, record: Record) -> None:
        """The driver's on_record for one tokenizer record: its prior skipped, run or submitted."""
        run_id = record["run_id"]
        tok_dir = run_folder.run_dir(self.out, run_id)
        if not self.force:
            existing = read_prior_record(folder.prior_dir(self.out, self.prior_id(run_id)))
            if existing is not None and existing.get("status") == FINISHED:
                self.report({**existing, "skipped": True})
                return
        config = self.by_run_id[run_id]
        if record.get("status") == records.FINISHED and self.submit is not None:
            self.submit(tok_dir, config, self.prior_id(run_id))
        else:  # in-process backends, and every unfinished tokenizer: its skipped record takes no time
            self.report(self.run_here(tok_dir, config))

    def run_here(self, tok_dir: Path, config: RunConfig) -> Record:
        from bench.generation.run import run_prior

        return run_prior(tok_dir, self.prior, self.out, force=self.force, progress=self.progress,
                         device=config.device, data_root=config.data_root,
                         dataset_paths=dict(config.dataset_paths) or None, deterministic=config.deterministic)

    def report(self, record: Record) -> None:
        self.records.append(record)
        if self.on_prior_record is not None:
            self.on_prior_record(record)


def run_grid_with_priors(configs: Sequence[RunConfig], out: Path | str, prior: PriorConfig | None, *,
                         force: bool = False, progress: bool = True, on_record: OnRecord | None = None,
                         on_prior_record: OnRecord | None = None, backend: str = "ray",
                         **backend_options: Any) -> list[Record]:
    """`api.run_grid`, and with `prior` one prior per tokenizer cell (see the module docstring). The
    tokenizer records in the order of `configs`, then the prior records (kind "prior") in the order
    their tokenizers ended. `on_prior_record` sees each prior record as it ends (default: one line
    printed); pass a no-op to stay quiet."""
    from bench import api

    if prior is None:
        return api.run_grid(list(configs), out, force=force, progress=progress, on_record=on_record,
                            backend=backend, **backend_options)
    prior.check()
    ray_based = is_ray_backend(backend)
    out = Path(out).resolve() if ray_based else Path(out)  # Ray workers elsewhere need the absolute path
    by_run_id = {resolve(c).run_id: c for c in configs}  # validates every config before any work, as run_grid
    jobs = PriorJobs(prior, out, force, progress, by_run_id,
                     print_prior_outcome if on_prior_record is None else on_prior_record)

    def chained(record: Record) -> None:
        if on_record is not None:
            on_record(record)
        jobs.after_tokenizer(record)

    if not ray_based:
        tokenizers = api.run_grid(list(configs), out, force=force, progress=progress, on_record=chained,
                                  backend=backend, **backend_options)
        return tokenizers + jobs.records
    from bench.scheduling.backends.ray_priors import RayPriors

    with RayPriors(jobs, backend_options) as ray_jobs:
        jobs.submit = ray_jobs.submit
        tokenizers = api.run_grid(list(configs), out, force=force, progress=progress, on_record=chained,
                                  backend=backend, **backend_options)
        ray_jobs.wait()
    return tokenizers + jobs.records


def describe_tokenizer(record: Record) -> str:
    t = record.get("tokenizer") or {}
    return (f"{t.get('method')} on {t.get('dataset')} K={t.get('codebook_size')} seed={t.get('seed')} "
            f"(prior {(record.get('config') or {}).get('preset')})")


def print_prior_outcome(record: Record) -> None:
    """One line per prior as it ends, beside the tokenizer lines of `run_bench.py`."""
    what = describe_tokenizer(record)
    status = record.get("status")
    if record.get("skipped"):
        print(f"prior skipped for {what}: finished before ({record['prior_id']}; --force reruns)", flush=True)
    elif status == FINISHED:
        m = record.get("metrics") or {}
        gfid = "n/a (no Inception in this prior preset)" if m.get("gfid") is None else f"{m['gfid']:.2f}"
        nll = "n/a" if m.get("val_nll") is None else f"{m['val_nll']:.3f}"
        print(f"prior finished for {what} in {record.get('wall_s') or 0:.0f}s: gFID {gfid}, held-out NLL {nll} "
              "nats/token", flush=True)
    elif status == "skipped":
        print(f"prior skipped for {what}: {record.get('error')}", flush=True)
    else:
        print(f"prior FAILED for {what}: {record.get('error')}", file=sys.stderr, flush=True)
