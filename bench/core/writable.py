"""A results folder proved writable before any run starts: a folder that cannot be created or
written (a read-only mount, /proc, a full quota) would otherwise fail each run after its start-up,
as failed records that cannot even be written. The proof leaves nothing behind: folders it had to
create are removed again, so a refusal that comes later still finds no results folder."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench.core.errors import UserError


def require_writable_folder(folder: Path) -> None:
    """Create `folder` (and missing parents), write and remove a probe file in it, and remove the
    folders it created; a UserError naming the folder and the system's reason if anything fails."""
    missing = []
    parent = Path(os.path.abspath(folder))
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    try:
        for path in reversed(missing):
            path.mkdir()
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"results folder {folder}: cannot be created or written ({exc.strerror or exc}); "
                        "choose a writable one with --out") from None
    finally:
        for path in missing:  # innermost first; one that another process filled meanwhile stays
            try:
                path.rmdir()
            except OSError:
                pass
