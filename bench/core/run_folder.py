"""The files of a run folder, `OUT/runs/<run_id>/`, named in one place. Importing this costs
nothing (no torch), so the reporting code can read run folders without loading the training code."""
from __future__ import annotations

from pathlib import Path

RUNS = "runs"
RECORD = "record.json"  # the result record (bench.runs.records)
CHECKPOINT = "checkpoint.safetensors"  # weights, optimizer and RNG state, step (bench.training.checkpoint)
TRAIN_LOG = "train_log.jsonl"  # one JSON line per logged step (bench.training.train_log)
GRID = "reconstructions.png"  # originals above reconstructions (bench.evaluation)
CODE_COUNTS = "code_counts.npy"  # histogram of code indices over the evaluation split
PER_IMAGE = "per_image.npz"  # per-image metric values (one array per metric key) and the image names, in split order
FEATURES = "inception_features.npy"  # float16 (N, 2048) Inception pool3 features of the reconstructions, same order
TENSORBOARD = "tensorboard"  # TensorBoard event files of the training curves (bench.training.curves)
CODE_WORDS = "code_words.json"  # names of the codes where they have names (Quantizer.code_labels), index-aligned
LEASE = "lease.json"  # which driver trains the run now (bench.runs.lease); absent once the run has ended


def runs_dir(out: Path | str) -> Path:
    return Path(out) / RUNS


def run_dir(out: Path | str, run_id: str) -> Path:
    return runs_dir(out) / run_id
