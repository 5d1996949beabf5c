from __future__ import annotations

import pytest

from bench import api
from tests.bench.scheduling.captured_grid import Captured


@pytest.fixture
def captured(monkeypatch) -> dict:
    """Stops `run_bench.py` at the scheduler: the configs and scheduling options the CLI passed to
    `api.run_grid`, read without running anything (the call raises Captured)."""
    seen: dict = {}

    def fake_run_grid(configs, out, **kwargs):
        seen.update(kwargs, configs=configs)
        raise Captured

    monkeypatch.setattr(api, "run_grid", fake_run_grid)
    return seen
