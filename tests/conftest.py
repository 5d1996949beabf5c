"""Shared test setup: the repository root is importable (pytest's rootdir insertion), Ray runs
without writing an auth token, and torch uses both cores deterministically."""
import os

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
