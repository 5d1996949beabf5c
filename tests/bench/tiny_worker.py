"""Imported by the Ray workers of the scheduling tests (`worker_imports`): the test registrations of
tests/bench/tiny.py, and evaluation without the perceptual metrics (tiny.fast_eval)."""
from tests.bench import tiny

tiny.register()
tiny.fast_eval()
