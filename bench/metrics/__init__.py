"""`python -m bench.metrics ORIG_DIR RECON_DIR`: the entry point of the metrics command (see
bench/cli/metrics.py). The metrics themselves live in bench/evaluation/metrics/."""
