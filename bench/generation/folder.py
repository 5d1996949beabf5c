"""The files of a prior run, `OUT/priors/<prior_id>/`, and the token caches it leaves in the
tokenizer's run folder, named in one place. Importing this costs nothing (no torch), so the
reporting code can read prior folders without loading the training code.

`prior_id` is `<tokenizer run_id>--<prior preset>-s<prior seed>-<hash>`, the hash over the tokenizer's
run id and the prior's whole resolved config: equal configs on one tokenizer, equal ids."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

PRIORS = "priors"
RECORD = "record.json"  # the prior's record (bench.generation.record)
CHECKPOINT = "checkpoint.safetensors"  # prior weights, optimizer and RNG state, step
TRAIN_LOG = "train_log.jsonl"  # same name and format as a tokenizer run's (bench.training.train_log)
SAMPLES = "samples"  # one file per sampling batch: tokens, labels and Inception features
GRID = "samples.png"  # the first generated images, in rows
BOOTSTRAP = "bootstrap.npz"  # gFID and KID of each resample of the samples (bench.generation.bootstrap)
TOKENIZER_RFID = "tokenizer_rfid.npz"  # features behind an rFID the prior measured (bench.generation.tokenizer_rfid)
TOKEN_CACHE = "prior_tokens_{split}.npz"  # in the TOKENIZER's run folder: its encoded split


def token_cache_name(split: str) -> str:
    return TOKEN_CACHE.format(split=split)


def sample_batch_name(batch: int) -> str:
    return f"batch_{batch:06d}.npz"


def priors_dir(out: Path | str) -> Path:
    return Path(out) / PRIORS


def prior_dir(out: Path | str, prior_id: str) -> Path:
    return priors_dir(out) / prior_id


def prior_id(tokenizer_run_id: str, preset: str, seed: int, config: dict[str, Any]) -> str:
    blob = json.dumps({"tokenizer": tokenizer_run_id, "prior": config}, sort_keys=True, default=str).encode()
    return f"{tokenizer_run_id}--{preset}-s{seed}-{hashlib.sha256(blob).hexdigest()[:10]}"
