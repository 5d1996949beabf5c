"""`python run_bench.py list` (and `--list`): methods, datasets and presets, one line each."""
from __future__ import annotations

import argparse

from bench.runs import presets


def list_everything() -> str:
    import datasets
    import methods

    lines = ["methods:"]
    lines += [f"  {name:<16} {desc}" for name, desc in methods.describe().items()]
    lines.append("datasets:")
    lines += [f"  {name:<16} {desc}" for name, desc in datasets.describe().items()]
    lines.append("presets:")
    lines += [f"  {p.name:<16} {p.description}" for p in presets.PRESETS.values()]
    return "\n".join(lines)




def build_parser() -> argparse.ArgumentParser:
    from bench.cli import parsing

    return parsing.OneLineParser(prog="run_bench.py list", description="List methods, datasets and presets.")


def run(args: argparse.Namespace) -> int:
    print(list_everything())
    return 0
