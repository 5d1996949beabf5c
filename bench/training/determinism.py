"""`--deterministic`: the process settings under which a CUDA run repeats itself bit for bit.

On the CPU every op vqbench uses is deterministic already (a run depends on the seed, the CPU, torch
and the torch thread count only), so the switch changes nothing there: a CPU run is made in torch's
plain mode with or without it (some of these settings would change CPU results in the last bits:
the math attention kernel rounds differently from the CPU's fused one). On CUDA several backward ops add in an order that changes from call to call
(atomic adds): the embedding and `index_add_` backward of the codebook methods, cuDNN's weight
gradients, the fused attention kernels' backward, reflection padding's backward. This module switches
such ops to deterministic kernels where torch has one, and for the two that torch only warns about
under `warn_only=True` it takes a deterministic route itself: attention through the math kernel, and
reflection padding (in ST-LPIPS) through index selection (bench/models/reflection_pad.py, applied
by bench/models/perceptual.py when this mode is on). Ops with neither only warn, so a run never
stops for them.

`configure` is called at the start of every run, in whatever process runs it (in-process, a Ray task,
each data-parallel worker), so a process that ran a deterministic run and then runs a plain one (or a
CPU one) returns to torch's own settings. Nothing here touches the GPU or opens a CUDA context.
"""
from __future__ import annotations

import os
import warnings

import torch

# cuBLAS picks its workspace once per process, at its first call: a deterministic run needs one of
# the two fixed configurations NVIDIA documents for bit-wise reproducible results, set before that.
CUBLAS_ENV = "CUBLAS_WORKSPACE_CONFIG"
CUBLAS_DETERMINISTIC = (":4096:8", ":16:8")

_SDP_SWITCHES = ("flash", "mem_efficient", "cudnn")  # the fused attention kernels; math stays on


def _sdp_enabled(name: str) -> bool | None:
    getter = getattr(torch.backends.cuda, f"{name}_sdp_enabled", None)
    return None if getter is None else bool(getter())


def _sdp_enable(name: str, on: bool) -> None:
    setter = getattr(torch.backends.cuda, f"enable_{name}_sdp", None)
    if setter is not None:
        setter(on)


# What this process had before any run changed it (torch's defaults, or what the caller set).
_DEFAULTS = {
    "algorithms": (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()),
    "cudnn": (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark),
    "sdp": {name: _sdp_enabled(name) for name in _SDP_SWITCHES},
}


def set_cublas_workspace() -> None:
    """NVIDIA's deterministic cuBLAS workspace setting in this process's environment (one of the two
    already there is kept). The command line sets it before any work, so that the processes it starts
    (a local Ray instance's workers, Ray Train's workers, which set their GPU before a run begins) have
    it from their start; Ray forwards it to a cluster's nodes (bench/scheduling/backends/ray_session.py)."""
    if os.environ.get(CUBLAS_ENV) not in CUBLAS_DETERMINISTIC:
        os.environ[CUBLAS_ENV] = CUBLAS_DETERMINISTIC[0]


def configure(deterministic: bool, device: torch.device) -> bool:
    """Set (or undo) the deterministic mode for a run about to start in this process on `device`;
    returns whether the mode is on (only for a CUDA device: see the module docstring)."""
    if not (deterministic and torch.device(device).type == "cuda"):
        torch.use_deterministic_algorithms(_DEFAULTS["algorithms"][0], warn_only=_DEFAULTS["algorithms"][1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = _DEFAULTS["cudnn"]
        for name, on in _DEFAULTS["sdp"].items():
            if on is not None:
                _sdp_enable(name, on)
        return False
    if os.environ.get(CUBLAS_ENV) not in CUBLAS_DETERMINISTIC and torch.cuda.is_initialized():
        warnings.warn(f"--deterministic: CUDA was initialised in this process before {CUBLAS_ENV} was set; if "
                      f"cuBLAS already ran, its workspace stays as it was (set {CUBLAS_ENV}={CUBLAS_DETERMINISTIC[0]} "
                      "in the environment to be sure)", stacklevel=2)
    set_cublas_workspace()
    # warn_only: an op with no deterministic CUDA kernel warns instead of failing the run.
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False  # autotuning may pick a different algorithm on each run
    # Under warn_only, the flash and memory-efficient attention backward stay non-deterministic (they
    # only warn); the math kernel's backward is plain matmuls, deterministic under the settings above.
    for name in _SDP_SWITCHES:
        _sdp_enable(name, False)
    return True

