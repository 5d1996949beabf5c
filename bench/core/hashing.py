"""A file's hex digest, read in 1 MiB blocks (weights and checkpoints run to hundreds of MB): the one
way checkpoints, FID weights, reference statistics and released tokenizers are fingerprinted."""
from __future__ import annotations

import hashlib
from pathlib import Path

BLOCK = 1 << 20


def file_digest(path: Path | str, algorithm: str = "sha1") -> str:
    h = hashlib.new(algorithm)
    with Path(path).open("rb") as f:
        while block := f.read(BLOCK):
            h.update(block)
    return h.hexdigest()
