"""The speed benchmark: `python -m bench.speed` (quantizers against their peers, training steps,
metric throughput)."""
import sys

from bench.speed.main import main

sys.exit(main())
