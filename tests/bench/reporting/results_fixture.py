"""Hand-written result records with known values, shared by the table, plot and report tests.

`write_fixture(out)` writes OUT/runs/<run_id>/ folders the way the runner does (record.json,
per_image.npz, reconstructions.png, code_counts.npy, train_log.jsonl) without training anything.
`write_per_image` writes per_image.npz through the evaluator's own writer.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from bench.core import run_folder
from bench.core.atomic import write_json_atomic
from bench.evaluation import evaluator
from bench.runs import records

# (dataset, method, K, seed) -> metrics. Means and stds below are what the tests expect.
#   photos/vqgan/K=16: fid 10, 14 -> mean 12, std 2.828427; psnr 20, 22 -> 21 ± 1.414214
#   photos/vqct/K=16:  fid 8 (one seed, 1024 images -> dagger); psnr 25 -> best PSNR
#   photos/lfq/K=16:   seed 0 failed -> a "failed" row
#   photos/vqgan/K=32: one seed; photos/vqct/K=32 has no record -> "missing"
RUNS: list[tuple[str, str, int, int, dict[str, float] | None]] = [
    ("photos", "vqgan", 16, 0, {"fid": 10.0, "psnr": 20.0, "ssim": 0.50, "lpips": 0.30, "utilization": 0.50,
                               "perplexity": 6.0}),
    ("photos", "vqgan", 16, 1, {"fid": 14.0, "psnr": 22.0, "ssim": 0.60, "lpips": 0.20, "utilization": 0.75,
                               "perplexity": 8.0}),
    ("photos", "vqct", 16, 0, {"fid": 8.0, "psnr": 25.0, "ssim": 0.55, "lpips": 0.25, "utilization": 1.0,
                              "perplexity": 12.0, "utilization_adj": 1.0, "utilization_noun": 1.0}),
    ("photos", "lfq", 16, 0, None),
    ("photos", "vqgan", 32, 0, {"fid": 9.0, "psnr": 23.0, "ssim": 0.58, "lpips": 0.22, "utilization": 0.25,
                               "perplexity": 5.0}),
    ("cub200", "vqgan", 16, 0, {"fid": 30.0, "psnr": 19.0, "ssim": 0.40, "lpips": 0.40, "utilization": 0.30,
                               "perplexity": 4.0}),
    ("cub200", "vqct", 16, 0, {"fid": 20.0, "psnr": 18.0, "ssim": 0.45, "lpips": 0.35, "utilization": 0.90,
                              "perplexity": 11.0, "utilization_adj": 0.8, "utilization_noun": 1.0}),
]
FID_IMAGES = {"vqct": 1024}  # other methods: 4096 images, no dagger
# Per-image values: the record's mean + an image difficulty shared by every run of a dataset (sd
# below) + a small noise of each run (a tenth of it), both exactly zero-mean, so per_image.npz
# averages to the record's value and paired differences between runs are resolved (unpaired, the
# difficulty would hide them).
PER_IMAGE_SD = {"psnr": 2.0, "ssim": 0.05, "lpips": 0.05}
N_IMAGES = 64


def _zero_mean(rng: np.random.Generator, sd: float, n: int) -> np.ndarray:
    x = rng.normal(0.0, sd, n)
    return x - x.mean()


def write_per_image(run_dir: Path, dataset: str, metrics: dict[str, float], seed: int,
                    n: int = N_IMAGES) -> None:
    """per_image.npz of one run, the evaluator's way (bench.evaluation.evaluator.write_per_image)."""
    names = [f"{dataset}_{i:04d}.png" for i in range(n)]
    difficulty = np.random.default_rng(len(dataset))
    noise = np.random.default_rng(seed + 1000 * len(run_dir.name))
    values = {k: metrics[k] + _zero_mean(difficulty, sd, n) + _zero_mean(noise, sd / 10, n)
              for k, sd in PER_IMAGE_SD.items() if metrics.get(k) is not None}
    evaluator.write_per_image(run_dir / run_folder.PER_IMAGE, names, values)


VQCT_WORDS = {"adj": ["red", "small", "furry", "shiny", "wooden", "old"],
              "noun": ["dog", "tree", "car", "house", "bird", "cup", "road", "sky", "boat", "lamp"]}


def make_record(dataset: str, method: str, k: int, seed: int, metrics: dict[str, float] | None) -> dict[str, Any]:
    run_id = f"{dataset}-{method}-k{k}-s{seed}"
    full = {key: None for key in ("fid", "psnr", "ssim", "lpips", "utilization", "perplexity", "dead_codes")}
    if metrics:
        full.update(metrics)
        full["dead_codes"] = round(k * (1 - metrics["utilization"]))
    n_fid = FID_IMAGES.get(method, 4096)
    return {
        "run_id": run_id, "status": records.FINISHED if metrics else records.FAILED,
        "error": None if metrics else "NonFiniteLoss: loss became nan at step 3",
        "config": {"method": method, "dataset": dataset, "codebook_size": k, "seed": seed, "preset": "cpu-tiny",
                   "steps": 40, "model": {"resolution": 32}},
        "metrics": full if metrics else {},
        "protocol": {"n_images": n_fid, "fid": {"n_images": n_fid, "weights": "pt_inception-2015-12-05"},
                     "lpips": "alex", "split": "val", "resolution": 32} if metrics else {},
        "versions": {"vqbench": "0.1.0", "python": "3.11", "torch": "2.x"},
        "device": "cpu", "tokens": 16 if metrics else None, "wall_s": 12.5, "train_s": 10.0,
        # VQCT emits top_k + 1 = 3 indices per position, the others one
        "indices_per_image": (48 if method == "vqct" else 16) if metrics else None,
    }


def fixture_bits(method: str, k: int) -> float:
    """The bit budget of a fixture run at its 16 positions: VQCT at K = 16 splits 6 adjectives : 10 nouns
    and emits 2 adjective indices and 1 noun index per position; the others one index of K."""
    return 16 * (2 * math.log2(6) + math.log2(10)) if method == "vqct" else 16 * math.log2(k)


def write_fixture(out: Path, images: bool = True, per_image: bool = True, bits: bool = False) -> list[dict[str, Any]]:
    """`bits`: finished records carry bits_per_image and bits_per_pixel (as the runner's do now)."""
    recs = []
    rng = np.random.default_rng(0)
    for dataset, method, k, seed, metrics in RUNS:
        rec = make_record(dataset, method, k, seed, metrics)
        if bits and metrics:
            rec.update(bits_per_image=fixture_bits(method, k), bits_per_pixel=fixture_bits(method, k) / (32 * 32))
        run_dir = run_folder.runs_dir(out) / rec["run_id"]
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run_dir / run_folder.RECORD, rec)
        recs.append(rec)
        if metrics and per_image:
            write_per_image(run_dir, dataset, metrics, seed)
        if not metrics or not images:
            continue
        # originals row over reconstructions row, 4 images of 8x8 (the evaluator's layout)
        # the same validation images for every run of a dataset, as the evaluator gives them
        orig = np.random.default_rng(len(dataset)).integers(0, 255, size=(8, 32, 3), dtype=np.uint8)
        recon = np.clip(orig.astype(int) + rng.integers(-20, 20, size=orig.shape), 0, 255).astype(np.uint8)
        Image.fromarray(np.concatenate([orig, recon], axis=0)).save(run_dir / "reconstructions.png")
        used = int(round(k * metrics["utilization"]))
        counts = np.zeros(k, dtype=np.int64)
        counts[:used] = rng.integers(1, 100, size=used)
        np.save(run_dir / "code_counts.npy", counts)
        with open(run_dir / "train_log.jsonl", "w") as f:
            f.writelines(json.dumps({"step": step, "loss": 1.0 / step, "utilization": metrics["utilization"] * step / 40,
                                    "perplexity": 2.0}) + "\n" for step in (10, 20, 30, 40))
        if method == "vqct":
            (run_dir / "code_words.json").write_text(json.dumps(VQCT_WORDS))
    return recs


@pytest.fixture(scope="module", name="out")
def results_out(tmp_path_factory) -> Path:
    """The fixture records in a fresh results folder, once per test module (import it to use `out`)."""
    folder = tmp_path_factory.mktemp("results")
    write_fixture(folder)
    return folder
