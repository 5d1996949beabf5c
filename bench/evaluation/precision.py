"""Evaluation runs in float32 on every device: `evaluation_precision()` switches autocast off (for
the CPU, CUDA and the evaluation's own device, whatever the caller enabled) and TF32 (and oneDNN's
reduced-precision float32) off for matmuls and convolutions, and restores the caller's settings on
the way out.

WHY: a checkpoint must give the same metrics on a CPU and a GPU to float rounding. Under bf16
autocast a 200-step vqgan changed 27% of its uint8 pixels and 0.3% of its code indices (CPU-emulated,
issue 25); cuDNN convolutions use TF32 by default on Ampere and later, with a 10-bit mantissa.

Only backend flags are read and written: nothing here touches `torch.cuda`, so a CPU run opens no
CUDA context (tests/bench/evaluation/test_precision.py checks it with `torch.cuda` patched to fail).

Two APIs set the TF32 flags. torch >= 2.9 has per-backend `fp32_precision` ("ieee", "tf32", "none"
= inherit); reading a legacy flag (`allow_tf32`, `get_float32_matmul_precision`) raises there when
the caller set the new one inconsistently, so on such a torch only the new leaves are touched.
Older torch has only the legacy flags.
"""
from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import torch

# What the records say (protocol["evaluation_precision"]) and what the FID reference cache key holds.
DESCRIPTION = "float32: autocast off, TF32 off for matmuls and convolutions (cuBLAS, cuDNN, oneDNN)"
TAG = "fp32"
AUTOCAST_DEVICE_TYPES = ("cpu", "cuda")  # switched off always; the evaluation's own device type besides


@functools.cache
def _precision_leaves() -> tuple[Any, ...]:
    """The backend objects of the new API that take float32 matmuls and convolutions (empty on old torch)."""
    b = torch.backends
    candidates = [getattr(b.cuda, "matmul", None), getattr(b.cudnn, "conv", None), getattr(b.cudnn, "rnn", None),
                  getattr(b.mkldnn, "matmul", None), getattr(b.mkldnn, "conv", None), getattr(b.mkldnn, "rnn", None)]
    leaves = []
    for leaf in candidates:
        try:
            if leaf is not None and isinstance(leaf.fp32_precision, str):
                leaves.append(leaf)
        except (AttributeError, RuntimeError):
            continue  # a torch without this leaf
    return tuple(leaves)


def current_flags() -> dict[str, Any]:
    """The float32 precision flags as they are now, in a form `restore_flags` takes back."""
    leaves = _precision_leaves()
    if leaves:
        return {"leaves": [(leaf, leaf.fp32_precision) for leaf in leaves]}
    return {"matmul": torch.get_float32_matmul_precision(), "cudnn_tf32": torch.backends.cudnn.allow_tf32}


def restore_flags(flags: dict[str, Any]) -> None:
    if "leaves" in flags:
        for leaf, value in flags["leaves"]:
            leaf.fp32_precision = value
        return
    torch.set_float32_matmul_precision(flags["matmul"])
    torch.backends.cudnn.allow_tf32 = flags["cudnn_tf32"]


def _set_full_float32() -> None:
    leaves = _precision_leaves()
    if leaves:
        for leaf in leaves:
            leaf.fp32_precision = "ieee"
        return
    torch.set_float32_matmul_precision("highest")  # also cuBLAS's legacy allow_tf32 on this torch
    torch.backends.cudnn.allow_tf32 = False


@contextmanager
def evaluation_precision(device_type: str | None = None) -> Iterator[None]:
    """float32 throughout the block: autocast off for the CPU, CUDA and `device_type`, TF32 off; the
    caller's autocast state and precision flags come back afterwards, on error too. Nests."""
    saved = current_flags()
    try:
        _set_full_float32()
        with ExitStack() as stack:
            for kind in dict.fromkeys((*AUTOCAST_DEVICE_TYPES, *([device_type] if device_type else []))):
                stack.enter_context(torch.autocast(device_type=kind, enabled=False))
            yield
    finally:
        restore_flags(saved)


def cache_tag(device_type: str) -> str:
    """The part of a cache key that says where and how features were computed, e.g. "cuda-fp32"."""
    return f"{device_type}-{TAG}"


def tf32_enabled(kind: str) -> bool:
    """Whether float32 `kind` ("matmul": cuBLAS, "conv": cuDNN) runs in TF32 now, read through the API
    this torch answers without raising (see the module docstring)."""
    b = torch.backends
    if _precision_leaves():
        value = (b.cuda.matmul if kind == "matmul" else b.cudnn.conv).fp32_precision
        if value == "none":  # inherits its backend's, then the global setting
            value = (b.cuda.matmul if kind == "matmul" else b.cudnn).fp32_precision
            value = getattr(b, "fp32_precision", "ieee") if value == "none" else value
        return value == "tf32"
    return bool(b.cuda.matmul.allow_tf32 if kind == "matmul" else b.cudnn.allow_tf32)


@contextmanager
def matmul_tf32(on: bool | None) -> Iterator[None]:
    """cuBLAS float32 matmuls in TF32 (True), in full float32 (False) or as they are (None) within the
    block, through the API this torch takes; the caller's flags come back afterwards."""
    saved = current_flags()
    if on is not None:
        if _precision_leaves():
            torch.backends.cuda.matmul.fp32_precision = "tf32" if on else "ieee"
        else:
            torch.backends.cuda.matmul.allow_tf32 = on
    try:
        yield
    finally:
        restore_flags(saved)
