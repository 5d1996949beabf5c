"""The code-words figure: for runs whose codes have names (a quantizer whose `code_labels()` is not
None writes them to the run folder as code_words.json), the most used codes of each code group,
labelled with their names. Knows no method: any run folder with the file gets the figure."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.core import run_folder
from bench.reporting.figure_style import FIGURES, finished, plt, safe, save
from bench.runs import records


def code_words(run_dir: Path, record: dict[str, Any] | None = None) -> dict[str, list[str]] | None:
    """The names of a run's codes, per group, in code-index order within each group.

    Looked up in this order: record["code_words"], then OUT/runs/<id>/code_words.json. Either holds
    {group: [names...], ...} (groups laid out one after another in index order) or what
    `Quantizer.code_labels()` returns, {"groups": {group: [lo, hi], ...}, "words": [one name per
    code index]} (no groups: one joint codebook). None when neither exists."""
    data = (record or {}).get("code_words")
    path = Path(run_dir) / run_folder.CODE_WORDS
    if data is None and path.exists():
        data = json.loads(path.read_text())
    if not data:
        return None
    if "words" in data:
        groups = data.get("groups") or {"word": [0, len(data["words"])]}
        return {g: list(data["words"][lo:hi]) for g, (lo, hi) in sorted(groups.items(), key=lambda kv: kv[1][0])}
    return {g: list(w) for g, w in data.items() if isinstance(w, list)}


def code_words_top(counts: np.ndarray, words: dict[str, list[str]], out: Path, stem: str, top: int = 10,
                   title: str = "") -> list[Path]:
    """Horizontal bars of the `top` most used codes of each group, labelled with their names. `words`
    maps group -> names in index order; groups follow one another in the histogram, in that order."""
    counts = np.asarray(counts, dtype=float)
    n_words = sum(len(w) for w in words.values())
    if n_words != len(counts):
        raise ValueError(f"{n_words} words for {len(counts)} codes: the words do not belong to this codebook")
    fig, axes = plt.subplots(1, len(words), figsize=(4.2 * len(words), 0.32 * top + 1.2), squeeze=False)
    start, total = 0, max(counts.sum(), 1.0)
    colors = plt.get_cmap("tab10")
    for i, (ax, (group, group_words)) in enumerate(zip(axes[0], words.items())):
        c = counts[start:start + len(group_words)]
        order = np.argsort(-c, kind="stable")[:top]
        ax.barh(range(len(order))[::-1], 100 * c[order] / total, color=colors(i % 10))
        ax.set_yticks(range(len(order))[::-1], [f"{group_words[j]} (#{start + j})" for j in order])
        ax.set_xlabel("share of validation tokens (%)")
        ax.set_title(f"most used codes: {group}")
        start += len(group_words)
    if title:
        fig.suptitle(title)
    return save(fig, Path(out) / FIGURES, stem)


def code_words_figures(runs: pd.DataFrame, out: Path, top: int = 10) -> tuple[list[Path], list[str]]:
    """The figure for the first finished seed of each (dataset, method, K) whose run folder (or
    record) has code names; the second value lists runs that have names but no figure, and why."""
    paths: list[Path] = []
    skipped: list[str] = []
    done = finished(runs)
    for (dataset, method, k), g in done.sort_values("Seed").groupby(["Dataset", "Method", "Codebook size"],
                                                                     sort=True):
        for _, r in g.iterrows():
            run_dir = run_folder.runs_dir(out) / r["run_id"]
            try:
                words = code_words(run_dir, records.read_record(run_dir))
            except (OSError, ValueError, TypeError) as exc:  # a damaged file: say so, draw the others
                skipped.append(f"{r['run_id']}: unreadable {run_folder.CODE_WORDS} ({exc})")
                break
            if words is None:
                continue
            counts_path = run_dir / run_folder.CODE_COUNTS
            if not counts_path.exists():
                skipped.append(f"{r['run_id']}: code names but no {run_folder.CODE_COUNTS}")
                break
            try:
                paths += code_words_top(np.load(counts_path), words, out, f"code_words_{safe(r['run_id'])}", top,
                                        f"{method} on {dataset}, K={int(k)}: most used codes")
            except ValueError as exc:
                skipped.append(f"{r['run_id']}: {exc}")
            break
    return paths, skipped
