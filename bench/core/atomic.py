"""Atomic file writes: every file vqbench writes (records, checkpoints, tables, figures, the report,
grids, caches) goes through `atomic_path`, so a reader sees the old file or the new one, never half.

The temporary file has a unique name in the target's own folder (so `os.replace` is a rename on one
filesystem, and two writers of the same path, e.g. a retried Ray task beside a worker that has not
died yet, never write into each other's temporary file). It is flushed and fsynced before the
rename. If anything fails (a full disk, a kill), the temporary file is removed and the previous
file at the path is left as it was.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: Path | str, suffix: str = "") -> Iterator[Path]:
    """Yields a temporary path beside `path`; on a clean exit it is fsynced and renamed onto `path`.

    For writers that take a file name (safetensors, PIL, matplotlib, numpy). `suffix` is added to
    the temporary name for libraries that pick the format from the extension (".png")."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results and caches may be shared
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_folder(folder: Path | str) -> Iterator[Path]:
    """Yields a temporary folder beside `folder`; on a clean exit its files are fsynced and the folder
    renamed onto `folder`. If another process created `folder` first, its copy is kept and ours
    dropped: callers build identical contents for one name (a cache keyed by its inputs)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file():
                _fsync_file(f)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not folder.is_dir():
                raise
        _fsync_dir(folder.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_bytes_atomic(path: Path | str, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_text_atomic(path: Path | str, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path | str, data: Any) -> None:
    """JSON with sorted keys and indentation; values JSON does not know are written with str()."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable; not every filesystem lets a folder be opened for this."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
