"""Result records: `results/runs/<run_id>/record.json`, one per run, written atomically."""
from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

from bench.core.paths import REPO_ROOT

RECORD_NAME = "record.json"
CODE_WORDS_NAME = "code_words.json"  # words of a language-model codebook (VQCT), index-aligned with code_counts.npy
FINISHED, FAILED = "finished", "failed"
VERSION = "0.1.0"


def runs_dir(out: Path) -> Path:
    return Path(out) / "runs"


def write_json_atomic(path: Path, data: Any) -> None:
    """Temp file in the same folder + os.replace: readers see the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_record(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / RECORD_NAME
    return json.loads(path.read_text()) if path.exists() else None


def iter_records(out: Path) -> Iterator[dict[str, Any]]:
    base = runs_dir(out)
    if base.is_dir():
        for run_dir in sorted(base.iterdir()):
            record = read_record(run_dir)
            if record is not None:
                yield record


@functools.lru_cache(maxsize=1)
def versions() -> dict[str, str | None]:
    import numpy
    import torch

    try:
        git = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        git, dirty = None, None
    return {"vqbench": VERSION, "git": git, "git_dirty": dirty, "python": platform.python_version(),
            "torch": torch.__version__, "numpy": numpy.__version__, "platform": platform.platform()}
