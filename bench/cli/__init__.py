"""Command line: `python run_bench.py [run|table|report|list|eval]` and `python -m bench.metrics`;
one module per subcommand, each a thin layer over bench.api."""
