"""The speed benchmark: `python -m bench.speed` (quantizers against their peers, training steps,
metric throughput)."""
