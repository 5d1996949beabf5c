"""Imported by the Ray workers of the scheduling tests (`worker_imports`): the test registrations of
tests/bench/scheduling/tiny.py."""
from tests.bench.scheduling import tiny

tiny.register()
