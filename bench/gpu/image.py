"""The GPU machines' image as data: which Python packages it holds (requirements/gpu_image.txt), what
the bundle must therefore carry, and what the CPU rehearsal installs to stand in for it.

    python -m bench.gpu.image rehearsal PYVER     # requirements of the rehearsal venv, one a line
    python -m bench.gpu.image constraints PYVER   # the image's known versions, as pip constraints
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.core.paths import REPO_ROOT

IMAGE_LIST = REPO_ROOT / "requirements" / "gpu_image.txt"
# The project's requirement files whose packages the rehearsal takes from the image list (ray's
# scheduling backends are not part of a one-GPU check; nodeps.txt holds data-only packages).
PROJECT_LISTS = ("base.txt", "codebooks.txt", "metrics.txt", "test.txt")

# Where the image's version has no wheel for the rehearsal's Python: the closest that has one, and why.
# Checked with `pip download --only-binary=:all: --python-version 3.11` on 2026-12-06.
SUBSTITUTES: dict[str, dict[str, tuple[str, str]]] = {
    "3.11": {"numpy": ("numpy>=2.4,<2.5", "numpy 2.5.2 has no CPython 3.11 wheel: the newest 2.4 instead")},
}


def normalize(name: str) -> str:
    """PEP 503 name: lower case, runs of '-', '_', '.' as one '-'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_image(path: Path = IMAGE_LIST) -> dict[str, str | None]:
    """{normalised name: version or None} of the image's packages."""
    out: dict[str, str | None] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, version = line.partition("==")
        out[normalize(name)] = version.strip() or None
    return out


@dataclass(frozen=True)
class Requirement:
    name: str  # normalised
    line: str  # as written in the project's file, e.g. "torch>=2.4,<=2.14.1"


def project_requirements(folder: Path = REPO_ROOT / "requirements") -> list[Requirement]:
    """Every requirement line of the project's lists, in file order (names normalised, extras kept in line)."""
    out = []
    for list_name in PROJECT_LISTS:
        for line in (folder / list_name).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                name = re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0]
                out.append(Requirement(normalize(name), line))
    return out


def rehearsal_requirements(pyver: str, image: dict[str, str | None] | None = None) -> list[tuple[str, str]]:
    """(requirement, note) for the rehearsal venv: each project requirement that the image holds, at the
    image's version where it is known (else the project's own bound), or the substitute for this Python."""
    image = read_image() if image is None else image
    subs = SUBSTITUTES.get(pyver, {})
    out = []
    for req in project_requirements():
        if req.name not in image:
            continue
        if req.name in subs:
            out.append(subs[req.name])
        elif image[req.name]:
            out.append((f"{req.name}=={image[req.name]}", "the image's version"))
        else:
            out.append((req.line, "version on the image not recorded: the project's bound"))
    return out


def rehearsal_constraints(pyver: str, image: dict[str, str | None] | None = None) -> list[str]:
    """The image's known versions as constraints (so that dependencies pip pulls in match it too)."""
    image = read_image() if image is None else image
    subs = SUBSTITUTES.get(pyver, {})
    return [f"{name}=={version}" for name, version in sorted(image.items()) if version and name not in subs]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ("rehearsal", "constraints"):
        print("usage: python -m bench.gpu.image rehearsal|constraints PYVER", file=sys.stderr)
        return 2
    if args[0] == "rehearsal":
        for line, note in rehearsal_requirements(args[1]):
            print(f"{line}  # {note}")
    else:
        print("\n".join(rehearsal_constraints(args[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
