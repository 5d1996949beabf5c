"""Imported by the Ray workers of the scheduling tests (`worker_imports`): the test registrations of
tests/bench/scheduling/tiny.py, and evaluation without the perceptual metrics (tiny.fast_eval)."""
from tests.bench.scheduling import tiny

tiny.register()
tiny.fast_eval()
