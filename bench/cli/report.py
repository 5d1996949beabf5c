"""`python run_bench.py report`: write the figures and the static HTML report from the records on disk."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.cli import parsing
from bench.cli.table import add_view_args, build_tables
from bench.reporting.summary import Summary
from bench.runs.runner import DEFAULT_OUT


def build_parser() -> argparse.ArgumentParser:
    p = parsing.OneLineParser(prog="run_bench.py report", description="Write the figures and the static HTML report "
                      "(tables, figures, protocol, environment, links to run folders) from records on disk.")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder holding runs/ (default: results/)")
    p.add_argument("--methods", type=parsing.comma_list(str), default=None, help="only these methods")
    p.add_argument("--datasets", type=parsing.comma_list(str), default=None, help="only these datasets")
    add_view_args(p)
    p.add_argument("--path", type=Path, default=None, help="where to write the page (default: OUT/report.html)")
    return p


def write_report(args: argparse.Namespace, summary: Summary) -> int:
    from bench.reporting import report as report_mod

    page = report_mod.write_report(args.out, built=summary, path=getattr(args, "path", None))
    print(f"report: {page}", file=sys.stderr if getattr(args, "format", "terminal") != "terminal" else sys.stdout)
    return 0


def run(args: argparse.Namespace) -> int:
    return write_report(args, build_tables(args))
