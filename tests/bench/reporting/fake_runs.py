"""Run folders of fake methods with chosen per-image values, written the way the evaluator writes
them (record.json, per_image.npz through evaluator.write_per_image, float16 inception_features.npy,
a FID reference entry in the cache), for the interval, paired-test and conclusion tests.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.core import run_folder
from bench.core.atomic import write_json_atomic
from bench.evaluation import evaluator
from bench.evaluation.metrics import fid
from tests.bench.reporting.results_fixture import make_record

REFERENCE = "fake__val__32px__n{n}__test.npz"


def write_run(out: Path, method: str, seed: int, per_image: dict[str, np.ndarray], dataset: str = "photos",
              k: int = 16, metrics: dict[str, float] | None = None, features: np.ndarray | None = None,
              reference: str | None = None, steps: int = 40) -> dict:
    """One finished run: the record's metrics are the means of `per_image` (plus `metrics`)."""
    n = len(next(iter(per_image.values())))
    means = {key: float(np.mean(v)) for key, v in per_image.items()}
    rec = make_record(dataset, method, k, seed, {"utilization": 0.5, "perplexity": 4.0, **means, **(metrics or {})})
    rec["config"]["steps"] = steps
    if steps != 40:  # make_record's id has no steps: runs of one method at two step counts need two folders
        rec["run_id"] += f"-t{steps}"
    rec["protocol"]["n_images"] = n
    rec["protocol"]["fid"] = {"n_images": n, "reference_file": reference}
    run_dir = run_folder.runs_dir(out) / rec["run_id"]
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / run_folder.RECORD, rec)
    evaluator.write_per_image(run_dir / run_folder.PER_IMAGE, [f"im{i:04d}.png" for i in range(n)], per_image)
    if features is not None:
        np.save(run_dir / run_folder.FEATURES, features.astype(np.float16))
    return rec


def write_reference(cache: Path, originals: np.ndarray) -> str:
    """A FID reference entry in fid_reference's layout under cache/fid/reference; its file name."""
    name = REFERENCE.format(n=len(originals))
    folder = cache / "fid" / "reference"
    folder.mkdir(parents=True, exist_ok=True)
    mu, sigma = fid.statistics(originals)
    np.savez(folder / name, mu=mu, sigma=sigma, features=originals.astype(np.float32),
             meta=json.dumps({"digest": "test", "n_images": len(originals)}))
    return name


def two_methods(out: Path, delta: float, noise: float, n: int = 252, seeds: tuple[int, ...] = (0,),
                seed_sd: float = 0.0, draw: int = 0, names: tuple[str, str] = ("alpha", "beta")) -> None:
    """Method names[1]'s PSNR is names[0]'s + `delta` on average: per image, a shared difficulty (sd 3 dB),
    plus independent noise (sd `noise`) per run, plus a per-seed offset (sd `seed_sd`) per run."""
    rng = np.random.default_rng(draw)
    difficulty = 25.0 + rng.normal(0.0, 3.0, n)
    for seed in seeds:
        for name, shift in zip(names, (0.0, delta)):
            offset = rng.normal(0.0, seed_sd) if seed_sd else 0.0
            psnr = difficulty + shift + offset + rng.normal(0.0, noise, n)
            write_run(out, name, seed, {"psnr": psnr})
