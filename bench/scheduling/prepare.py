"""Per-machine preparation: build what the runs of a grid read (dataset splits and their decoded
caches, each method's `Quantizer.prepare` cache) once, before any run starts, so that parallel runs
never race to build the same cache. A backend calls `prepare_here` on each machine that hosts runs."""
from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from bench.scheduling.plan import Cell


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
        for split in getattr(r, "splits", ("train", "val")):  # the same calls run_one makes (an eval: val only)
            # The crop seed changes how images are read, never what is cached: one call per seed-less key.
            key = json.dumps(["data", name, split, res, root, {k: v for k, v in options.items() if k != "seed"}],
                             sort_keys=True, default=str)
            steps.setdefault(key, (f"dataset {name} {split} {res}px", lambda n=name, s=split, x=res, o=root, kw=options:
                                   datasets.create(n, s, x, o, **kw)))
        if not getattr(r, "prepares_method", True):  # a released checkpoint's codebook is in its files
            continue
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


def warn(problems: Sequence[str]) -> None:
    """Print preparation problems as warnings: the runs go on and record their own failures."""
    for p in problems:
        print(f"warning: {p}", file=sys.stderr, flush=True)
