"""Whether this machine's GPUs are usable by torch, and if not, why, in one line.

A driver older than the CUDA that the torch wheel was built for (or a CPU-only wheel on a GPU machine)
makes `torch.cuda.is_available()` return False while `nvidia-smi` lists the GPUs. Runs would then
silently take the CPU preset, so the driver and torch's CUDA version are named instead. Asking
`nvidia-smi` never creates a CUDA context; asking torch `is_available()` does not either.
"""
from __future__ import annotations

import shutil
import subprocess


def visible_gpus() -> list[str]:
    """The GPUs `nvidia-smi -L` lists (its `GPU 0: NAME (UUID: ...)` lines); none without nvidia-smi."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.startswith("GPU ")]


def driver_version() -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0].strip() if out else None


def unusable_reason() -> str | None:
    """None when torch can use a CUDA GPU or there is none to use; else why a GPU that nvidia-smi
    lists is out of torch's reach, with the versions that decide it."""
    import torch

    if torch.cuda.is_available():
        return None
    gpus = visible_gpus()
    if not gpus:
        return None
    built_for = torch.version.cuda or "none (a CPU-only build)"
    return (f"nvidia-smi lists {len(gpus)} GPU(s) (driver {driver_version() or 'unknown'}) but torch "
            f"{torch.__version__} (CUDA {built_for}) cannot use them: install a torch build whose CUDA this "
            "driver supports, or update the driver")
