#!/usr/bin/env python
"""vqbench command line. See `python run_bench.py --help`; all logic lives in bench/."""
import sys

from bench.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
