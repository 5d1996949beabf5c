"""`run_bench.py --until-resolved`: after the grid's seeds, add seeds to the cells of the unresolved
comparisons, one look at a time, until each is resolved or `--max-seeds` is reached.

The loop only decides WHICH runs come next: each batch is a list of RunConfigs (the grid's configs
with the next seeds) handed to the same grid execution as the grid itself (`run_configs`: any
backend, finished runs reused), and the verdicts are read back from the records on disk through the
Summary, whose paired tests follow the group-sequential design (bench.reporting.sequential) that the
loop writes to OUT/until_resolved.json before its first look. So the tables rebuilt later, by
`run_bench.py table`, decide every comparison exactly as the loop did.

Why seeds are added above every seed run so far (not the smallest unused): a look's data are a
pair's first n shared seeds in increasing order, and a seed below one already run would change the
data of looks already made.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.core.errors import UserError
from bench.evaluation.metrics import keys
from bench.evaluation.metrics.registry import load_all, spec
from bench.reporting import paired, sequential
from bench.reporting.intervals import MIN_SEEDS
from bench.reporting.summary import Summary
from bench.runs.config import RunConfig, resolve

Record = dict[str, Any]
DEFAULT_MAX_SEEDS = 10
HEADLINE = (keys.FID, keys.PSNR)  # the cross-dataset table's metrics (summary.cross_metric's preference)


@dataclass
class Outcome:
    resolved: bool  # every comparison of the chosen metrics resolved
    lines: list[str]  # what was printed, the last being the verdict or the budget line
    records: list[Record] = field(default_factory=list)  # the runs the loop started (not those reused)
    state: sequential.State | None = None


def check_metrics(metrics: Sequence[str] | None) -> list[str]:
    """The metrics to resolve, as given (empty: the headline ones, chosen once the grid's records
    exist); a name that is not a registered metric with a better direction is a UserError."""
    registry = load_all()
    for k in metrics or []:
        if k not in registry and spec(k).better is None:
            raise UserError(f"--until-resolved {k}: not a registered metric; known: {', '.join(registry.names())}")
        if spec(k).better is None:
            raise UserError(f"--until-resolved {k}: {spec(k).label} has no better direction, so no difference of it "
                            "is resolved; name metrics with an arrow in the tables, e.g. psnr,fid")
    return list(metrics or [])


def plan(seeds: Sequence[int], max_seeds: int | None) -> sequential.Design:
    """The sequential design for a grid of `seeds`: the first look at its seed count (at least
    MIN_SEEDS), one seed more per look, the last at `max_seeds`. A budget that leaves nothing to add
    is a UserError, before any run starts."""
    max_seeds = DEFAULT_MAX_SEEDS if max_seeds is None else max_seeds
    n = len(set(seeds))
    if max_seeds < MIN_SEEDS:
        raise UserError(f"--max-seeds {max_seeds}: a paired test across seeds needs at least {MIN_SEEDS} seeds; "
                        f"give --max-seeds {MIN_SEEDS} or more")
    if max_seeds <= n:
        raise UserError(f"--max-seeds {max_seeds} leaves no seed to add to the {n} of --seeds; give a larger "
                        "--max-seeds or fewer --seeds")
    return sequential.Design(first=max(n, MIN_SEEDS), max_seeds=max_seeds)


def seed_order(seeds: Sequence[int], max_seeds: int) -> list[int]:
    """The grid's seeds in increasing order, then the next ones above the largest, up to max_seeds."""
    have = sorted(set(seeds))
    return have + list(range(have[-1] + 1, have[-1] + 1 + max_seeds - len(have)))


def headline(summary: Summary) -> list[str]:
    """The headline metrics the records have values of (rFID, PSNR)."""
    df = summary.per_dataset
    return [k for k in HEADLINE if k in summary.metrics and k in df.columns and df[k].notna().any()]


def _cell(dataset: Any, method: Any, k: Any) -> tuple[str, str, int]:
    return str(dataset), str(method), int(k)


def open_comparisons(comparisons: pd.DataFrame, state: sequential.State) -> pd.DataFrame:
    """The comparisons of the state's rows and metrics whose METHOD difference is not resolved."""
    if comparisons is None or comparisons.empty:
        return pd.DataFrame()
    covered = comparisons.apply(lambda r: state.covers(r["Dataset"], r["best_method"], r["best_codebook_size"],
                                                       r["metric"])
                                and state.covers(r["Dataset"], r["Method"], r["Codebook size"], r["metric"]), axis=1)
    done = (comparisons["kind"] == paired.SEEDS) & comparisons["resolved"].astype(bool)
    return comparisons[covered & ~done]


def describe(r: pd.Series) -> str:
    return f"{spec(str(r['metric'])).label} on {r['Dataset']}, {r['Method']} against {r['best_method']}"


def _budget_line(still: pd.DataFrame, design: sequential.Design) -> str:
    parts = []
    for _, r in still.iterrows():
        text = describe(r)
        if int(r.get("look") or 0) > 0:
            text += f" (p = {float(r['p']):.2g} at {int(r['n'])} seeds, look {int(r['look'])} of {len(design.looks)})"
        note = r.get("seeds_needed_note")
        if isinstance(note, str) and note:
            text += f"; {note}"
        parts.append(text)
    return (f"until-resolved: budget spent: --max-seeds {design.max_seeds} reached with {len(still)} "
            f"comparison{'s' if len(still) != 1 else ''} unresolved: " + "; ".join(parts) + ".")


def run(configs: Sequence[RunConfig], out: Path | str, design: sequential.Design, metrics: Sequence[str],
        run_configs: Callable[[list[RunConfig]], list[Record]], summarize: Callable[[], Summary],
        say: Callable[[str], None] = print) -> Outcome:
    """Add seeds, one look at a time, to the cells of the grid `configs` (whose seeds have run) in
    the unresolved comparisons of `metrics` (empty: the headline ones), until every one is resolved or
    the design's last look is made. `run_configs` executes a batch of configs (the grid's own
    execution, any backend); `summarize` builds the Summary from the records on disk."""
    out = Path(out)
    templates: dict[tuple[str, str, int], RunConfig] = {}
    for c in configs:
        r = resolve(c)
        templates.setdefault(_cell(r.dataset, r.method, r.codebook_size), c)
    order = seed_order([c.seed for c in configs], design.max_seeds)
    chosen = list(metrics) or headline(summarize())
    if not chosen:
        line = "until-resolved: nothing to resolve: the records have none of " + ", ".join(HEADLINE)
        say(line)
        return Outcome(False, [line])
    state = sequential.State(design, chosen, [list(k) for k in templates], order)
    state.save(out)  # before the first look: the tables decide by the design from now on
    lines: list[str] = [f"until-resolved: {', '.join(spec(k).label for k in chosen)}; {design.describe()}"]
    say(lines[0])
    started: list[Record] = []
    while True:
        still = open_comparisons(summarize().comparisons, state)
        if still.empty:
            lines.append(f"until-resolved: resolved: every comparison of {', '.join(spec(k).label for k in chosen)} "
                         f"is decided" + (f"; seeds added: {_added(state)}" if state.batches else " at the grid's seeds"))
            break
        wanted = _targets(still, design, templates)
        if not wanted:
            lines.append(_budget_line(still, design))
            break
        n = max(wanted.values())
        line = (f"until-resolved: {len(still)} comparison{'s' if len(still) != 1 else ''} unresolved "
                f"({'; '.join(describe(r) for _, r in still.iterrows())}); next look at {n} seeds: seeds "
                f"{', '.join(map(str, order[:n]))} of {', '.join(f'{m} K={k} on {d}' for d, m, k in sorted(wanted))} "
                "(finished runs are reused)")
        lines.append(line)
        say(line)
        records = run_configs([dataclasses.replace(templates[cell], seed=s)
                               for cell, n in sorted(wanted.items()) for s in order[:n]])
        fresh = [r for r in records if not r.get("skipped")]
        started += fresh
        finished = [r for r in fresh if r.get("status") == "finished"]
        state.batches.append({"look_seeds": max(wanted.values()),
                              "seeds": sorted({int(r["config"]["seed"]) for r in finished}),
                              "runs": [r.get("run_id") for r in finished],
                              "failed": [r.get("run_id") for r in fresh if r.get("status") != "finished"]})
        state.save(out)
        if not finished:  # nothing new to look at: the same look again would loop forever
            why = "no run of this batch finished (see the failed runs above)" if fresh else \
                "every run of this batch had finished before, yet the look did not advance"
            lines.append(f"until-resolved: stopped: {why}; the comparisons stay unresolved")
            break
    state.outcome = lines[-1]
    state.save(out)
    say(lines[-1])
    return Outcome(lines[-1].startswith("until-resolved: resolved"), lines, started, state)


def _targets(still: pd.DataFrame, design: sequential.Design,
             templates: dict[tuple[str, str, int], RunConfig]) -> dict[tuple[str, str, int], int]:
    """Per grid cell of an open comparison, the seed count of its pair's next look (the first look
    while a row has fewer seeds); pairs whose last look is made ask for nothing."""
    wanted: dict[tuple[str, str, int], int] = {}
    for _, r in still.iterrows():
        shared = min(int(r["best_seeds"]), int(r["seeds"]))
        target = design.first if shared < design.first else design.next_look(shared)
        if target is None:
            continue
        for cell in (_cell(r["Dataset"], r["best_method"], r["best_codebook_size"]),
                     _cell(r["Dataset"], r["Method"], r["Codebook size"])):
            if cell in templates:
                wanted[cell] = max(wanted.get(cell, 0), target)
    return wanted


def _added(state: sequential.State) -> str:
    seeds = sorted({int(s) for b in state.batches for s in b.get("seeds", [])})
    return ", ".join(map(str, seeds)) + f" ({len(state.batches)} batch{'es' if len(state.batches) != 1 else ''})"
