"""Figures from the records and run folders: PNG and SVG under OUT/figures/ (matplotlib, Agg).

- code_frequency_<dataset>: sorted code-frequency curves per run (the picture of codebook collapse)
- utilization_<dataset>: codebook usage over training steps, from each run's train_log.jsonl
- sweep_<dataset>: rFID and usage against codebook size, one line per method, error bars over seeds
- reconstructions_<dataset>: the same validation images reconstructed by every method
- vqct_words_<run_id>: VQCT's most used adjective and noun codes with their words

Every function returns the paths it wrote (nothing when it has no data) and never raises for a run
folder that lacks a file: a failed or old run simply has no curve.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")  # no display on the machines this runs on; set before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from bench.core import run_folder
from bench.core.atomic import atomic_path
from bench.evaluation.metrics import keys  # noqa: E402
from bench.reporting import tables  # noqa: E402
from bench.runs import records
from bench.training.train_log import read_train_log

FIGURES = "figures"
EXTENSIONS = ("png", "svg")
MAX_RECON_IMAGES = 8

plt.rcParams.update({"figure.constrained_layout.use": True, "figure.dpi": 100, "savefig.dpi": 120, "font.size": 9,
                     "axes.grid": True, "grid.alpha": 0.3, "svg.fonttype": "none", "svg.hashsalt": "vqbench"})


def _save(fig: plt.Figure, folder: Path, stem: str) -> list[Path]:
    """PNG and SVG, each through a temp file and a rename so a reader never sees half a figure."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in EXTENSIONS:
        path = folder / f"{stem}.{ext}"
        with atomic_path(path, suffix=f".{ext}") as tmp:
            fig.savefig(tmp, format=ext, bbox_inches="tight", metadata={"Date": None} if ext == "svg" else None)
        paths.append(path)
    plt.close(fig)
    return paths


def _safe(name: Any) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(name))


def _label(row: pd.Series, with_seed: bool = True) -> str:
    text = f"{row['Method']} K={int(row['Codebook size'])}"
    return text + (f" s{int(row['Seed'])}" if with_seed and not pd.isna(row.get("Seed")) else "")


def _finished(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["Status"] == records.FINISHED] if len(runs) else runs


def _styles(runs: pd.DataFrame) -> dict[tuple[str, int], dict[str, Any]]:
    """One colour per method, one line style per codebook size, stable across figures."""
    methods = sorted(set(runs["Method"]))
    sizes = sorted(set(int(k) for k in runs["Codebook size"]))
    colors = plt.get_cmap("tab10")
    dashes = ["-", "--", ":", "-."]
    return {(m, k): {"color": colors(i % 10), "linestyle": dashes[j % len(dashes)]}
            for i, m in enumerate(methods) for j, k in enumerate(sizes)}


# ------------------------------------------------------------------------------------------ usage

def code_frequency(runs: pd.DataFrame, out: Path) -> list[Path]:
    """Per dataset: each run's code histogram (code_counts.npy) sorted in decreasing order, as a
    fraction of all tokens, against the code's rank as a fraction of K (so sizes compare)."""
    paths: list[Path] = []
    done = _finished(runs)
    for dataset, sub in done.groupby("Dataset", sort=True):
        style = _styles(sub)
        fig, ax = plt.subplots(figsize=(6, 3.6))
        drawn = 0
        for _, r in sub.iterrows():
            path = run_folder.runs_dir(out) / r["run_id"] / run_folder.CODE_COUNTS
            if not path.exists():
                continue
            counts = np.sort(np.load(path).astype(float))[::-1]
            if counts.sum() <= 0:
                continue
            freq = counts / counts.sum()
            x = (np.arange(len(freq)) + 1) / len(freq)
            y = np.where(freq > 0, freq, np.nan)  # unused codes end the curve: that drop is collapse
            ax.plot(x, y, label=_label(r), **style[(r["Method"], int(r["Codebook size"]))])
            drawn += 1
        if not drawn:
            plt.close(fig)
            continue
        ax.set_yscale("log")
        ax.set_xlabel("code rank / codebook size")
        ax.set_ylabel("share of validation tokens")
        ax.set_title(f"Sorted code frequencies on {dataset} (curves end where codes go unused)")
        ax.legend(fontsize=7, ncol=2)
        paths += _save(fig, Path(out) / FIGURES, f"code_frequency_{_safe(dataset)}")
    return paths


def utilization_over_training(runs: pd.DataFrame, out: Path) -> list[Path]:
    """Per dataset: codebook usage (codes used in each logging window / K) against training step."""
    paths: list[Path] = []
    for dataset, sub in _finished(runs).groupby("Dataset", sort=True):
        style = _styles(sub)
        fig, ax = plt.subplots(figsize=(6, 3.6))
        drawn = 0
        for _, r in sub.iterrows():
            log = [e for e in read_train_log(run_folder.runs_dir(out) / r["run_id"]) if keys.UTILIZATION in e]
            if not log:
                continue
            ax.plot([e["step"] for e in log], [100 * e[keys.UTILIZATION] for e in log], marker=".", label=_label(r),
                    **style[(r["Method"], int(r["Codebook size"]))])
            drawn += 1
        if not drawn:
            plt.close(fig)
            continue
        ax.set_xlabel("training step")
        ax.set_ylabel("codes used in the log window (%)")
        ax.set_ylim(0, 105)
        ax.set_title(f"Codebook usage during training on {dataset}")
        ax.legend(fontsize=7, ncol=2)
        paths += _save(fig, Path(out) / FIGURES, f"utilization_{_safe(dataset)}")
    return paths


# ------------------------------------------------------------------------------------------ sweeps

def sweep(summ: pd.DataFrame, out: Path, metrics: Sequence[str] = (keys.FID, keys.UTILIZATION)) -> list[Path]:
    """Per dataset with at least two codebook sizes: each metric against K (log2 axis), one line per
    method, error bars = std over seeds. Built from the summary frame, so it matches the tables."""
    paths: list[Path] = []
    if summ.empty:
        return paths
    measured = summ[(summ["Source"] == tables.MEASURED) & (summ["Finished"] > 0)]
    for dataset, sub in measured.groupby("Dataset", sort=True):
        if sub["Codebook size"].nunique() < 2:
            continue
        shown = [m for m in metrics if m in sub.columns]
        fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 3.4), squeeze=False)
        for ax, m in zip(axes[0], shown):
            spec = tables.metric_spec(m)
            any_value = False
            for method, g in sub.groupby("Method", sort=True):
                g = g.sort_values("Codebook size")
                if g[m].notna().any():
                    any_value = True
                    ax.errorbar(g["Codebook size"], g[m], yerr=g[f"{m}_std"].fillna(0), marker="o", capsize=3,
                                label=method)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("codebook size K")
            ax.set_ylabel(spec.header())
            if any_value:
                ax.legend(fontsize=7)
            else:
                ax.text(0.5, 0.5, f"no {spec.label} in these records", ha="center", va="center",
                        transform=ax.transAxes)
        fig.suptitle(f"Codebook-size sweep on {dataset} (error bars: std over seeds)")
        paths += _save(fig, Path(out) / FIGURES, f"sweep_{_safe(dataset)}")
    return paths


# ------------------------------------------------------------------------------------------ images

def _grid_rows(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(originals row, reconstructions row) of an evaluator grid: originals above, reconstructions below."""
    img = np.asarray(Image.open(path).convert("RGB"))
    h = img.shape[0] // 2
    return img[:h], img[h:2 * h]


def reconstructions(runs: pd.DataFrame, out: Path, n_images: int = MAX_RECON_IMAGES) -> list[Path]:
    """Per dataset: the originals on top, then one row per (method, codebook size) with the first
    finished seed's reconstructions of the same validation images. Runs whose originals differ
    (another resolution or split) are left out of that figure rather than shown misaligned."""
    paths: list[Path] = []
    for dataset, sub in _finished(runs).groupby("Dataset", sort=True):
        rows: list[tuple[str, np.ndarray]] = []
        originals = None
        for (_, _), g in sub.sort_values("Seed").groupby(["Method", "Codebook size"], sort=True):
            r = g.iloc[0]
            path = run_folder.runs_dir(out) / r["run_id"] / run_folder.GRID
            if not path.exists():
                continue
            top, bottom = _grid_rows(path)
            if originals is None:
                originals = top
            if top.shape != originals.shape or not np.array_equal(top, originals):
                continue
            rows.append((_label(r, with_seed=False), bottom))
        if originals is None or not rows:
            continue
        h = originals.shape[0]
        width = min(originals.shape[1], n_images * h)
        fig, axes = plt.subplots(len(rows) + 1, 1, figsize=(min(12, 1.3 * width / h + 1.5), 1.3 * (len(rows) + 1)),
                                 squeeze=False)
        for ax, (name, img) in zip(axes[:, 0], [("original", originals)] + rows):
            ax.imshow(img[:, :width], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        fig.suptitle(f"Validation reconstructions on {dataset}")
        paths += _save(fig, Path(out) / FIGURES, f"reconstructions_{_safe(dataset)}")
    return paths


# ------------------------------------------------------------------------------------------ VQCT

def code_words(run_dir: Path, record: dict[str, Any] | None = None) -> dict[str, list[str]] | None:
    """The words of a VQCT run's codes, per group, in code-index order within each group.

    Looked up in this order: record["code_words"], then OUT/runs/<id>/code_words.json. Either holds
    {"adj": [...], "noun": [...]} (adjective codes first, then noun codes, as VQCT indexes them) or
    {"groups": {"adj": [lo, hi], ...}, "words": [one word per code index]} -- what a VQCTQuantizer
    has as `code_groups` and `words` (no groups: one joint codebook). None when neither exists:
    the VQCT prior is what knows the words, and a run that did not save them cannot be labelled."""
    data = (record or {}).get("code_words")
    path = Path(run_dir) / run_folder.CODE_WORDS
    if data is None and path.exists():
        data = json.loads(path.read_text())
    if not data:
        return None
    if "words" in data:  # VQCTQuantizer.words (index -> word) with its code_groups; none: one joint codebook
        groups = data.get("groups") or {"word": [0, len(data["words"])]}
        return {g: list(data["words"][lo:hi]) for g, (lo, hi) in sorted(groups.items(), key=lambda kv: kv[1][0])}
    return {g: list(w) for g, w in data.items() if isinstance(w, list)}


def vqct_top_words(counts: np.ndarray, words: dict[str, list[str]], out: Path, stem: str, top: int = 10,
                   title: str = "") -> list[Path]:
    """Horizontal bars of the `top` most used codes of each group (adjectives, nouns), labelled with
    their words. `words` maps group -> words in index order; groups are laid out one after another
    in the histogram (adjective codes first), as VQCT indexes them."""
    counts = np.asarray(counts, dtype=float)
    n_words = sum(len(w) for w in words.values())
    if n_words != len(counts):
        raise ValueError(f"{n_words} words for {len(counts)} codes: the words do not belong to this codebook")
    fig, axes = plt.subplots(1, len(words), figsize=(4.2 * len(words), 0.32 * top + 1.2), squeeze=False)
    start, total = 0, max(counts.sum(), 1.0)
    for ax, (group, group_words) in zip(axes[0], words.items()):
        c = counts[start:start + len(group_words)]
        order = np.argsort(-c, kind="stable")[:top]
        kind = "adjective" if group.startswith("adj") else "noun" if group.startswith("noun") else group
        color = "tab:blue" if kind == "adjective" else "tab:orange"
        ax.barh(range(len(order))[::-1], 100 * c[order] / total, color=color)
        ax.set_yticks(range(len(order))[::-1], [f"{group_words[i]} (#{start + i})" for i in order])
        ax.set_xlabel("share of validation tokens (%)")
        ax.set_title(f"most used {kind} codes")
        start += len(group_words)
    if title:
        fig.suptitle(title)
    return _save(fig, Path(out) / FIGURES, stem)


def vqct_words(runs: pd.DataFrame, out: Path, top: int = 10) -> tuple[list[Path], list[str]]:
    """The top-words figure for each finished VQCT run (first seed per dataset and K) whose words are
    known; the second value lists the runs left out and why, for the report."""
    paths: list[Path] = []
    skipped: list[str] = []
    vqct = _finished(runs)
    vqct = vqct[vqct["Method"].astype(str).str.startswith("vqct")] if len(vqct) else vqct
    for (dataset, k), g in vqct.sort_values("Seed").groupby(["Dataset", "Codebook size"], sort=True):
        r = g.iloc[0]
        run_dir = run_folder.runs_dir(out) / r["run_id"]
        words = code_words(run_dir, records.read_record(run_dir))
        counts_path = run_dir / run_folder.CODE_COUNTS
        if words is None or not counts_path.exists():
            why = "no code_words in the record or run folder" if words is None else f"no {run_folder.CODE_COUNTS}"
            skipped.append(f"{r['run_id']}: {why}")
            continue
        try:
            paths += vqct_top_words(np.load(counts_path), words, out, f"vqct_words_{_safe(r['run_id'])}", top,
                                    f"VQCT on {dataset}, K={int(k)}: most used codes")
        except ValueError as exc:
            skipped.append(f"{r['run_id']}: {exc}")
    return paths, skipped


def make_all(out: Path | str, built: dict[str, Any]) -> dict[str, Any]:
    """Every figure for the output of `tables.build`: {"figures": {kind: [paths]}, "notes": [...]}."""
    out = Path(out)
    runs, summ = built["runs"], built["summary"]
    figures: dict[str, list[Path]] = {}
    notes: list[str] = []
    if len(runs):
        figures["code_frequency"] = code_frequency(runs, out)
        figures["utilization"] = utilization_over_training(runs, out)
        figures["reconstructions"] = reconstructions(runs, out)
        figures["vqct_words"], notes = vqct_words(runs, out)
    figures["sweep"] = sweep(summ, out)
    if not figures["sweep"]:
        notes.append("no codebook-size sweep: no dataset has finished runs at two or more codebook sizes")
    return {"figures": figures, "notes": notes}


__all__ = ["code_frequency", "utilization_over_training", "sweep", "reconstructions", "code_words",
           "vqct_top_words", "vqct_words", "make_all", "FIGURES"]
