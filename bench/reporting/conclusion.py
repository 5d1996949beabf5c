"""The conclusion printed after the tables, in plain words: which METHOD differences the records
resolve, which are ties, and, where cells have fewer than intervals.MIN_SEEDS seeds, that nothing
is resolved at that size and the command that would resolve it.

Why the fewer-seeds answer names no winner: with one seed the marks come from the images of one
trained model per method, and another training run (another seed, or the same seed on another
machine or thread count) can reverse them. A conclusion that depended on those marks would differ from
machine to machine; this one depends only on how many seeds each cell has, so the default
benchmark prints the same conclusion everywhere.

Every comparison not resolved across seeds also says about how many seeds would resolve a difference
of the size observed (seeds_needed.py), from the paired differences over the seeds both rows share;
with one seed there is no spread across training runs to estimate it from, and the line says so.
Where `--until-resolved` ran, its group-sequential test decides (sequential.py) and the line names
the look that decided it.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.core.paths import REPO_ROOT
from bench.evaluation.metrics.registry import spec
from bench.reporting import paired, seeds_needed
from bench.reporting.frames import MEASURED
from bench.reporting.intervals import MIN_SEEDS
from bench.reporting.summary import Summary
from bench.runs import presets

DEFAULT_OUT = REPO_ROOT / "results"  # bench.runs.runner.DEFAULT_OUT, without importing torch
HEADING = "Conclusion"


def _measured(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty or "Source" not in df.columns:
        return df.iloc[0:0]
    return df[(df["Source"] == MEASURED) & (df["Finished"].fillna(0) > 0)]


def _labeller(rows: pd.DataFrame):
    """A row's name: its method, with K when a dataset's measured rows have several codebook sizes,
    and options/preset/steps when the frame has those columns (they vary)."""
    several_k = {d: g["Codebook size"].nunique() > 1 for d, g in rows.groupby("Dataset")} if len(rows) else {}

    def label(r: pd.Series | dict, method_col: str = "Method", k_col: str = "Codebook size") -> str:
        text = str(r[method_col])
        if several_k.get(r["Dataset"]) and not pd.isna(r.get(k_col)):
            text += f" K={int(r[k_col])}"
        extra = [str(r["Options"])] if "Options" in r and not pd.isna(r.get("Options")) and r["Options"] else []
        extra += [f"{c.lower()} {r[c]}" for c in ("Preset", "Steps") if c in r and not pd.isna(r.get(c))]
        return text + (f" ({', '.join(extra)})" if extra else "")
    return label


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _seeds_to_run(have: set[int]) -> list[int]:
    """The seeds already run plus the smallest unused ones, up to MIN_SEEDS (finished runs are reused)."""
    seeds, s = set(have), 0
    while len(seeds) < MIN_SEEDS:
        seeds.add(s)
        s += 1
    return sorted(seeds)


def _size_flags(g: pd.DataFrame) -> list[tuple[list[str], str]]:
    """How one command group's runs chose their K, as (methods, the flag) per command: runs an equal-bit
    grid made (record["bits_budget"]) repeat its --bits-per-image values, which give each method its own K
    again; the others repeat --codebook-sizes, one command per set of sizes (a method whose codebook is
    fixed, or that ran at other sizes, must not be crossed with the others' sizes)."""
    budget = (pd.to_numeric(g["bits_budget"], errors="coerce") if "bits_budget" in g
              else pd.Series(float("nan"), index=g.index))
    parts: list[tuple[list[str], str]] = []
    by_budget = g[budget.notna()]
    if len(by_budget):
        values = sorted(set(budget[by_budget.index]))
        parts.append((sorted(set(by_budget["Method"].astype(str))),
                      " ".join(f"--bits-per-image {int(v) if float(v).is_integer() else v!r}" for v in values)))
    sizes: dict[tuple[int, ...], list[str]] = {}
    for method, runs in g[budget.isna()].groupby("Method", sort=True):
        ks = tuple(sorted({int(k) for k in runs["Codebook size"].dropna()}))
        sizes.setdefault(ks, []).append(str(method))
    parts += [(names, "--codebook-sizes " + ",".join(map(str, ks))) for ks, names in sizes.items()]
    return parts


def resolving_commands(summary: Summary, cells: pd.DataFrame) -> list[str]:
    """`run_bench.py` command(s) that give `cells` MIN_SEEDS seeds: the grid their runs were trained
    on (methods, datasets, codebook sizes or bit budgets, preset and steps from the records) with more
    seeds, so that every run id they had comes back. One command per preset, step count, options
    variant and way of choosing K (_size_flags); the preset is given explicitly, because the default
    preset depends on the machine."""
    ids = {i for s in cells["run_ids"].astype(str) for i in s.split()}
    runs = summary.runs[summary.runs["run_id"].isin(ids)] if len(summary.runs) else summary.runs
    if runs.empty:
        return []
    commands = []
    flags = (runs["option_flags"] if "option_flags" in runs else pd.Series("", index=runs.index)).fillna("")
    # One command per preset, step count and variant: a method trained with two sets of options needs
    # two commands (its variants' --option flags cannot share one), other methods join the first.
    variant = pd.Series(0, index=runs.index)
    for _, g in runs.groupby(["Preset", "Steps", "Method"], sort=True, dropna=False):
        order = {f: i for i, f in enumerate(sorted(set(flags[g.index])))}
        variant[g.index] = [order[f] for f in flags[g.index]]
    for (preset, steps, _), group in runs.groupby(["Preset", "Steps", variant], sort=True, dropna=False):
        for names, size_flag in _size_flags(group):
            g = group[group["Method"].astype(str).isin(names)]
            parts = ["python run_bench.py", "--methods " + ",".join(names),
                     "--datasets " + ",".join(sorted(set(g["Dataset"].astype(str)))), size_flag]
            parts += [f for f in dict.fromkeys(flags[g.index]) if f]
            if isinstance(preset, str):
                parts.append(f"--preset {preset}")
            default_steps = presets.PRESETS[preset].train.steps if preset in presets.PRESETS else None
            if not pd.isna(steps) and int(steps) != default_steps:
                parts.append(f"--steps {int(steps)}")
            parts.append("--seeds " + ",".join(map(str, _seeds_to_run({int(s) for s in g["Seed"].dropna()}))))
            if Path(summary.out).resolve() != DEFAULT_OUT.resolve():
                parts.append(f"--out {summary.out}")
            commands.append(" ".join(parts))
    return commands


def _few_seeds_lines(summary: Summary, few: pd.DataFrame, label) -> list[str]:
    counts: dict[int, dict[str, list[str]]] = {}  # seeds -> dataset -> row names
    for _, r in few.iterrows():
        counts.setdefault(int(r["Finished"]), {}).setdefault(str(r["Dataset"]), []).append(label(r))
    have = "; ".join(", ".join(f"{_join(names)} on {d}" for d, names in by_dataset.items())
                     + f": {n} seed{'' if n == 1 else 's'}" for n, by_dataset in sorted(counts.items()))
    lines = [f"Not resolved at this size: a difference between METHODS needs >= {MIN_SEEDS} "
             f"finished seeds per cell (a paired test across seeds, which includes run-to-run training "
             f"variance), and these cells have fewer ({have}).",
             "Their bold marks compare the trained models on the validation images only; another seed or "
             "another machine can reverse them."]
    lines += _few_seeds_needed(summary.comparisons, label)
    commands = resolving_commands(summary, few)
    if commands:  # last: the line to act on
        lines.append(f"To resolve it, run the same grid with {MIN_SEEDS} seeds (finished runs are reused): " + " ; ".join(commands))
    return lines


def _few_seeds_needed(comps: pd.DataFrame | None, label) -> list[str]:
    """Seeds-needed estimates for the comparisons not made across seeds: from the shared seeds' paired
    differences where the rows share two or more, else one line saying why there is none."""
    if comps is None or comps.empty or "seeds_needed_note" not in comps:
        return []
    few = comps[(comps["kind"] != paired.SEEDS) & comps["seeds_needed_note"].fillna("").astype(bool)]
    estimated = few[few["seeds_shared"].fillna(0) >= 2]
    parts = [f"{spec(str(r['metric'])).label} on {r['Dataset']}, {label(r)} against {_best_label(r, label)}: "
             f"{r['seeds_needed_note']}" for _, r in estimated.iterrows()]
    out = []
    if parts:
        out.append(f"Seeds needed (a paired t-test across seeds at p < 0.05 with {seeds_needed.POWER:.0%} power, "
                   f"for the difference observed over the seeds both rows share): " + "; ".join(parts) + ".")
    if len(estimated) < len(few):
        out.append("With one seed per cell the variance across training runs cannot be estimated yet, so there "
                   "is no estimate of the seeds a difference needs.")
    return out


def _best_label(r: pd.Series, label) -> str:
    """The name of the column's best row of a comparison (its `best_*` fields)."""
    return label({"Dataset": r["Dataset"], "Method": r["best_method"], "Codebook size": r["best_codebook_size"],
                  **{c: r[f"best_{c}"] for c in ("Options", "Preset", "Steps") if f"best_{c}" in r}})


def _test_words(across: pd.DataFrame) -> str:
    """What decided a group of comparisons: the fixed paired t-test at n seeds, or the sequential
    design's looks (`--until-resolved`)."""
    n = int(across["n"].min())
    looks = across["look"].fillna(0).astype(int) if "look" in across else pd.Series(0, index=across.index)
    if not (looks > 0).any():
        return f"paired t-test over {n} seeds"
    most = int(across["max_looks"].max())
    made = ", ".join(sorted({f"look {int(lk)} of {most} at {int(m)} seeds" for lk, m in zip(looks, across["n"])}))
    return f"group-sequential paired t-test, {made}"


def _needed_text(ties: pd.DataFrame, label) -> str:
    """`; about 6 seeds would resolve a difference of 1.50 dB` for the rows tied with the best."""
    notes = [(label(r), str(r["seeds_needed_note"])) for _, r in ties.iterrows()
             if "seeds_needed_note" in r and isinstance(r["seeds_needed_note"], str) and r["seeds_needed_note"]]
    if not notes:
        return ""
    if len(notes) == 1:
        return "; " + notes[0][1]
    return "; " + "; ".join(f"{name}: {note}" for name, note in notes)


def _group_line(dataset: str, metric: str, comps: pd.DataFrame, label) -> str | None:
    """One dataset and metric: the best row against the others with MIN_SEEDS seeds, in words."""
    across = comps[comps["kind"] == paired.SEEDS]
    if across.empty:
        return None
    best = _best_label(across.iloc[0], label)
    tied = across[~across["resolved"].astype(bool)]
    ties = [label(r) for _, r in tied.iterrows()]
    worse = [label(r) for _, r in across.iterrows() if r["resolved"]]
    head = f"{spec(metric).label} on {dataset}: "
    if not ties:
        words = _test_words(across)
        level = "" if "look" in words else ", p < 0.05"  # a look's own nominal level decided it, not 0.05
        text = head + f"{best} is better than {_join(worse)} (resolved: {words}{level})"
    else:
        text = head + f"{_join([best] + ties)} tie (not resolved by a {_test_words(tied)})"
        if worse:
            text += f"; {_join(worse)} resolved worse"
        text += _needed_text(tied, label)
    untested = [label(r) for _, r in comps.iterrows() if r["kind"] != paired.SEEDS]
    if untested:
        text += f"; not compared across seeds: {_join(untested)} (fewer than {MIN_SEEDS} seeds)"
    return text + "."


def lines(summary: Summary) -> list[str]:
    """The conclusion as plain text lines (no heading); empty when no measured row has finished."""
    rows = _measured(summary.per_dataset)
    if rows.empty:
        return []
    label = _labeller(rows)
    df = summary.per_dataset
    # cells with fewer seeds, and those whose every run failed (rerunning them is part of the answer)
    few = df[(df["Source"] == MEASURED) & ((df["Finished"].fillna(0) > 0) | (df["Status"] == "failed"))
             & (df["Finished"].fillna(0) < MIN_SEEDS)]
    out = _few_seeds_lines(summary, few, label) if len(few) else []
    comps = summary.comparisons
    if comps is not None and len(comps):
        for (dataset, metric), g in comps.groupby(["Dataset", "metric"], sort=False):
            line = _group_line(str(dataset), str(metric), g, label)
            if line:
                out.append(line)
    if not out:
        out.append(f"Nothing to compare: fewer than two measured rows per dataset with {MIN_SEEDS} seeds.")
    return out


def text(summary: Summary) -> str:
    """The heading and one bullet per line, for the terminal and Markdown alike; "" when no lines."""
    got = lines(summary)
    return "" if not got else f"{HEADING}\n" + "".join(f"- {line}\n" for line in got)
