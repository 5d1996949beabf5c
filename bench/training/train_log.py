"""The train log, `train_log.jsonl`: one JSON object per logged step, appended as training goes.

A kill can cut the last line mid-write; readers skip a line that does not parse (there is at most
one, the last), and a resumed run first drops every entry after the checkpoint it resumes from
(those steps are redone), torn line included."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.core import run_folder
from bench.core.atomic import write_text_atomic


def read_train_log(run_dir: Path | str) -> list[dict[str, Any]]:
    path = Path(run_dir) / run_folder.TRAIN_LOG
    if not path.exists():
        return []
    return [entry for entry in map(_parse, path.read_text(errors="replace").splitlines()) if entry is not None]


def append(run_dir: Path | str, entry: dict[str, Any]) -> None:
    with open(Path(run_dir) / run_folder.TRAIN_LOG, "a") as f:
        f.write(json.dumps(entry) + "\n")


def truncate(run_dir: Path | str, last_step: int) -> None:
    """Keep the entries up to `last_step` (the checkpoint's); drop later and torn ones."""
    path = Path(run_dir) / run_folder.TRAIN_LOG
    if path.exists():
        kept = [e for e in read_train_log(run_dir) if e.get("step", last_step + 1) <= last_step]
        write_text_atomic(path, "".join(json.dumps(e) + "\n" for e in kept))


def _parse(line: str) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        entry = json.loads(line)
    except json.JSONDecodeError:
        return None
    return entry if isinstance(entry, dict) else None
