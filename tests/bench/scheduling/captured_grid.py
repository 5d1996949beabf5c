"""What the `captured` fixture (conftest.py) raises: `run_bench.py` stopped at the scheduler, after
`api.run_grid` recorded the configs and the scheduling options the CLI passed it."""


class Captured(Exception):
    pass
