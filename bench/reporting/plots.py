"""Figures from the records and run folders: PNG and SVG under OUT/figures/ (matplotlib, Agg).

- code_frequency_<dataset>: sorted code-frequency curves per run (the picture of codebook collapse)
- utilization_<dataset>: codebook usage over training steps, from each run's train_log.jsonl
- sweep_<dataset>: rFID and usage against codebook size, one line per method, error bars over seeds
- rate_distortion_<dataset>: rFID, PSNR and LPIPS against bits per image, one line per method
  (bench.reporting.rate_distortion)
- reconstructions_<dataset>: the same validation images reconstructed by every method
- code_words_<run_id>: the most used codes with their names, for runs whose codes have names
  (bench.reporting.code_words)

Every function returns the paths it wrote (nothing when it has no data) and never raises for a run
folder that lacks a file: a failed or old run simply has no curve.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from bench.core import run_folder
from bench.evaluation.metrics import keys
from bench.evaluation.metrics.registry import spec
from bench.reporting import rate_distortion
from bench.reporting.code_words import code_words_figures
from bench.reporting.figure_style import FIGURES, error_bars, finished, legend_or_note, plt, run_label, safe, save, styles
from bench.reporting.frames import MEASURED
from bench.reporting.summary import Summary
from bench.training.train_log import read_train_log

MAX_RECON_IMAGES = 8


# ------------------------------------------------------------------------------------------ usage

def code_frequency(runs: pd.DataFrame, out: Path) -> list[Path]:
    """Per dataset: each run's code histogram (code_counts.npy) sorted in decreasing order, as a
    fraction of all tokens, against the code's rank as a fraction of K (so sizes compare)."""
    paths: list[Path] = []
    done = finished(runs)
    for dataset, sub in done.groupby("Dataset", sort=True):
        style = styles(sub)
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
            ax.plot(x, y, label=run_label(r), **style[(r["Method"], int(r["Codebook size"]))])
            drawn += 1
        if not drawn:
            plt.close(fig)
            continue
        ax.set_yscale("log")
        ax.set_xlabel("code rank / codebook size")
        ax.set_ylabel("share of validation tokens")
        ax.set_title(f"Sorted code frequencies on {dataset} (curves end where codes go unused)")
        ax.legend(fontsize=7, ncol=2)
        paths += save(fig, Path(out) / FIGURES, f"code_frequency_{safe(dataset)}")
    return paths


def utilization_over_training(runs: pd.DataFrame, out: Path) -> list[Path]:
    """Per dataset: codebook usage (codes used in each logging window / K) against training step."""
    paths: list[Path] = []
    for dataset, sub in finished(runs).groupby("Dataset", sort=True):
        style = styles(sub)
        fig, ax = plt.subplots(figsize=(6, 3.6))
        drawn = 0
        for _, r in sub.iterrows():
            log = [e for e in read_train_log(run_folder.runs_dir(out) / r["run_id"]) if keys.UTILIZATION in e]
            if not log:
                continue
            ax.plot([e["step"] for e in log], [100 * e[keys.UTILIZATION] for e in log], marker=".",
                    label=run_label(r), **style[(r["Method"], int(r["Codebook size"]))])
            drawn += 1
        if not drawn:
            plt.close(fig)
            continue
        ax.set_xlabel("training step")
        ax.set_ylabel("codes used in the log window (%)")
        ax.set_ylim(0, 105)
        ax.set_title(f"Codebook usage during training on {dataset}")
        ax.legend(fontsize=7, ncol=2)
        paths += save(fig, Path(out) / FIGURES, f"utilization_{safe(dataset)}")
    return paths


# ------------------------------------------------------------------------------------------ sweeps

def sweep(summ: pd.DataFrame, out: Path, metrics: Sequence[str] = (keys.FID, keys.UTILIZATION)) -> list[Path]:
    """Per dataset with at least two codebook sizes: each metric against K (log2 axis), one line per
    method, error bars = the tables' 95% intervals (error_bars). Built from the summary frame, so it
    matches the tables."""
    paths: list[Path] = []
    if summ.empty:
        return paths
    measured = summ[(summ["Source"] == MEASURED) & (summ["Finished"] > 0)]
    for dataset, sub in measured.groupby("Dataset", sort=True):
        if sub["Codebook size"].nunique() < 2:
            continue
        shown = [m for m in metrics if m in sub.columns]
        fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 3.4), squeeze=False)
        for ax, m in zip(axes[0], shown):
            m_spec = spec(m)
            any_value = False
            # one line per method and recipe: rows of one method with different options (frames.py)
            by = ["Method", "Options"] if "Options" in sub.columns else ["Method"]
            for key, g in sub.groupby(by, sort=True):
                g = g.sort_values("Codebook size")
                if g[m].notna().any():
                    any_value = True
                    name = " ".join(str(v) for v in (key if isinstance(key, tuple) else (key,)) if v)
                    ax.errorbar(g["Codebook size"], g[m], yerr=error_bars(g, m), marker="o", capsize=3,
                                label=name)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("codebook size K")
            ax.set_ylabel(m_spec.header())
            legend_or_note(ax, any_value, m_spec.label)
        fig.suptitle(f"Codebook-size sweep on {dataset} (error bars: 95% intervals, as in the tables)")
        paths += save(fig, Path(out) / FIGURES, f"sweep_{safe(dataset)}")
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
    for dataset, sub in finished(runs).groupby("Dataset", sort=True):
        rows: list[tuple[str, np.ndarray]] = []
        originals = None
        for _, g in sub.sort_values("Seed").groupby(["Method", "Options", "Codebook size"], sort=True):
            r = g.iloc[0]
            path = run_folder.runs_dir(out) / r["run_id"] / run_folder.GRID
            if not path.exists():
                continue
            top, bottom = _grid_rows(path)
            if originals is None:
                originals = top
            if top.shape != originals.shape or not np.array_equal(top, originals):
                continue
            rows.append((run_label(r, with_seed=False), bottom))
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
        paths += save(fig, Path(out) / FIGURES, f"reconstructions_{safe(dataset)}")
    return paths


def make_all(out: Path | str, summary: Summary) -> dict[str, Any]:
    """Every figure for a Summary: {"figures": {kind: [paths]}, "notes": [...], "captions": {stem: text}}
    (captions: the figures whose text depends on their data, such as the kind of their error bars)."""
    out = Path(out)
    runs = summary.runs
    figures: dict[str, list[Path]] = {}
    notes: list[str] = []
    if len(runs):
        figures["code_frequency"] = code_frequency(runs, out)
        figures["utilization"] = utilization_over_training(runs, out)
        figures["reconstructions"] = reconstructions(runs, out)
        figures["code_words"], notes = code_words_figures(runs, out)
    figures["sweep"] = sweep(summary.per_dataset, out)
    if not figures["sweep"]:
        notes.append("no codebook-size sweep: no dataset has finished runs at two or more codebook sizes")
    figures["rate_distortion"], captions = rate_distortion.figures(summary.per_dataset, out)
    if not figures["rate_distortion"]:
        notes.append("no rate-distortion figure: no finished run recorded its bits per image")
    return {"figures": figures, "notes": notes, "captions": captions}


__all__ = ["FIGURES", "code_frequency", "make_all", "reconstructions", "sweep", "utilization_over_training"]
