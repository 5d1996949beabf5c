"""Where things live: the checkout (REPO_ROOT; the project runs from it, see README) and the one cache
folder for everything derived once per machine (FID weights and reference statistics, codebook
priors, decoded datasets): $VQBENCH_CACHE, default ~/.cache/vqbench."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def cache_root() -> Path:
    return Path(os.environ.get("VQBENCH_CACHE") or Path.home() / ".cache" / "vqbench")


def cache_dir(*parts: str) -> Path:
    """cache_root()/parts..., created."""
    path = cache_root().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
