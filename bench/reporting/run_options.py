"""The options a run was trained with, as the tables need them: a label for the rows of one method
trained with different options (so two recipes are two rows, never one mean), and the command-line
flags that repeat a run's options (so the conclusion's command reruns the same runs with more seeds)."""
from __future__ import annotations

import dataclasses
import json
import shlex
from collections.abc import Sequence
from typing import Any

from bench.core.errors import UserError
from bench.evaluation.metrics import fid_reference_choice


def _options(config: dict[str, Any]) -> dict[str, Any]:
    """A run's method options and (prefixed `dataset.`) dataset options, as resolved in its record."""
    out = dict(config.get("method_options") or {})
    out.update({f"dataset.{k}": v for k, v in (config.get("dataset_options") or {}).items()})
    return out


def options_labels(recs: Sequence[dict[str, Any]]) -> list[str]:
    """Per record, the options in which it differs from other runs of its method, dataset and source:
    "k=v, ..." over the keys whose values vary among them (sorted), "" where none vary. Read off the
    records, so no method's defaults need to be known and a record of an option that a later version
    dropped still reads."""
    opts = [_options(r.get("config") or {}) for r in recs]
    by_cell: dict[tuple, list[int]] = {}
    for i, r in enumerate(recs):
        c = r.get("config") or {}
        by_cell.setdefault((c.get("dataset"), c.get("method"), r.get("source")), []).append(i)
    labels = [""] * len(recs)
    for members in by_cell.values():
        keys = {k for i in members for k in opts[i]}
        varying = sorted(k for k in keys if len({_canonical(opts[j].get(k)) for j in members}) > 1)
        for i in members:
            labels[i] = ", ".join(f"{k}={opts[i].get(k)}" for k in varying)
    return labels


def _canonical(value: Any) -> str:
    """One spelling per value as JSON holds it (a tuple default and its stored list compare equal)."""
    return json.dumps(value, sort_keys=True, default=str)


def _cli_value(value: Any) -> str:
    """VALUE of `--option METHOD.KEY=VALUE` that bench.cli.parsing reads back as `value`: a bare word
    for plain strings, a Python literal for everything else."""
    if isinstance(value, str) and value.isidentifier() and value not in ("True", "False", "None"):
        return value
    return repr(tuple(value) if isinstance(value, list) else value)


def option_flags(config: dict[str, Any]) -> str | None:
    """`--option` / `--dataset-option` / `--fid-reference` flags that give a new run this run's options: every
    method option that differs from the method's default (variant defaults included), every dataset option
    given, and an FID reference other than val.
    None when the method is not registered in this version (its defaults are unknown)."""
    method = config.get("method")
    try:
        from methods import registry

        defaults = dataclasses.asdict(registry.build_options(str(method)))
    except (UserError, KeyError, TypeError):
        return None
    flags = [f"--option {shlex.quote(f'{method}.{k}={_cli_value(v)}')}"
             for k, v in sorted((config.get("method_options") or {}).items())
             if k not in defaults or _canonical(defaults[k]) != _canonical(v)]
    flags += [f"--dataset-option {shlex.quote(f'{k}={_cli_value(v)}')}"
              for k, v in sorted((config.get("dataset_options") or {}).items())]
    reference = config.get("fid_reference") or fid_reference_choice.DEFAULT
    if reference != fid_reference_choice.DEFAULT:  # it enters the run id (bench.runs.config)
        flags.append(f"--fid-reference {shlex.quote(str(reference))}")
    return " ".join(flags)
