"""Shared test setup: the repository root is importable (pytest's rootdir insertion), Ray runs
without writing an auth token, and torch runs one thread per process.

One thread: tests check numbers, not speed, and on 2 cores a second OpenMP thread that shares its core
with another process (a Ray worker, a subprocess under test) makes small convolutions ~100x slower.
Subprocesses inherit OMP_NUM_THREADS."""
import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
