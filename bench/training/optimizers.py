"""torch's Adam and AdamW, except that an optimizer whose parameters are all on the CPU never asks CUDA
anything.

Before each step torch's optimizers check whether the current CUDA stream is being captured into a
CUDA graph whenever CUDA is available, whatever the parameters' device; on a GPU machine that query
opens a CUDA context in a `--device cpu` run (and fails on a GPU in exclusive-process mode that
another process holds). Parameters on the CPU cannot be inside a CUDA graph capture, so for them the
check is skipped; for any other device it runs as torch's does. The update itself, the state and the
state dict are torch's.
"""
from __future__ import annotations

import torch


def _all_on_cpu(optimizer: torch.optim.Optimizer) -> bool:
    return all(p.device.type == "cpu" for group in optimizer.param_groups for p in group["params"])


class _NoCaptureCheckOnCpu:
    """Overrides torch's check under both the names it has had across torch versions."""

    def _accelerator_graph_capture_health_check(self) -> None:
        if not _all_on_cpu(self):
            super()._accelerator_graph_capture_health_check()

    def _cuda_graph_capture_health_check(self) -> None:
        if not _all_on_cpu(self):
            super()._cuda_graph_capture_health_check()


class Adam(_NoCaptureCheckOnCpu, torch.optim.Adam):
    pass


class AdamW(_NoCaptureCheckOnCpu, torch.optim.AdamW):
    pass
