"""`python run_bench.py table`: rebuild the result tables from the records on disk."""
from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli import parsing
from bench.core.errors import UserError
from bench.reporting import tables
from bench.reporting.summary import Summary, build
from bench.runs.runner import DEFAULT_OUT


def build_parser() -> argparse.ArgumentParser:
    p = parsing.OneLineParser(prog="run_bench.py table", description="Rebuild result tables from records on disk.")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder holding runs/ (default: results/)")
    p.add_argument("--methods", type=parsing.comma_list(str), default=None, help="only these methods")
    p.add_argument("--datasets", type=parsing.comma_list(str), default=None, help="only these datasets")
    p.add_argument("--format", choices=tables.formats(), default="terminal",
                   help="what to print (md, csv and tex are all written under OUT/tables/ as well)")
    add_view_args(p)
    p.add_argument("--report", action="store_true",
                   help="also write the figures (OUT/figures/) and the HTML report (OUT/report.html)")
    return p


def add_view_args(p: argparse.ArgumentParser) -> None:
    """Choices shared by `table` and `report`: which metrics, what makes a row, published numbers."""
    p.add_argument("--metrics", type=parsing.comma_list(str), default=None,
                   help="metric columns in this order, e.g. fid,psnr,utilization_adj (default: rFID, PSNR, "
                        "SSIM, LPIPS or ST-LPIPS, usage, perplexity)")
    p.add_argument("--group-by", type=parsing.comma_list(str), default=list(tables.DEFAULT_GROUP_BY),
                   help=f"config fields that make one row, seeds averaged unless 'seed' is one; from "
                        f"{','.join(tables.GROUP_FIELDS)} (default: method,codebook_size; preset and steps are "
                        f"added whenever they vary)")
    p.add_argument("--with-reported", action="store_true",
                   help="add published numbers (bench/reporting/reported_results.csv) as rows marked 'reported'")


def print_and_write_tables(summary: Summary, out: Path, fmt: str) -> None:
    """Print the tables in `fmt` and write every file format under OUT/tables/."""
    print(tables.render(summary, fmt), end="")
    if summary.cross is not None and fmt != "csv":  # one CSV per stream; the summary CSV is in OUT/tables/
        print()
        print(tables.render_cross(summary, fmt), end="")
    paths = tables.write_tables(summary, out)
    paths += print_and_write_generation(summary, out, fmt)
    from bench.reporting import conclusion

    said = conclusion.text(summary)
    if said and fmt != "csv":  # after every table, so it is the last thing read
        print()
        print(said, end="")
    if fmt == "terminal":
        print(f"tables written: {', '.join(str(p) for p in paths)}")


def print_and_write_generation(summary: Summary, out: Path, fmt: str) -> list[Path]:
    """The Generation section (bench.reporting.generation_table) after the reconstruction tables, for
    the priors of the tokenizer runs in `summary`, and OUT/tables/generation.*; nothing when no such
    prior record exists. CSV is not printed (one CSV per stream; the file has it)."""
    from bench.reporting import generation_table

    run_ids = set(summary.runs["run_id"]) if "run_id" in summary.runs.columns else set()
    rows = generation_table.read(out, run_ids=run_ids)
    if rows.empty:
        return []
    if fmt != "csv":
        print()
        print(generation_table.render(rows, fmt), end="")
    return generation_table.write(rows, out)


def build_tables(args: argparse.Namespace) -> Summary:
    try:
        summary = build(args.out, methods=args.methods, datasets=args.datasets, metrics=args.metrics,
                        group_by=args.group_by, with_reported=args.with_reported)
    except ValueError as exc:  # unknown metric or group-by field: one line, exit code 2
        raise UserError(str(exc)) from None
    if summary.runs.empty and not args.with_reported:
        raise UserError(f"no result records under {args.out / 'runs'}"
                        + (" for these --methods/--datasets" if args.methods or args.datasets else "")
                        + "; run the benchmark first")
    return summary


def run(args: argparse.Namespace) -> int:
    summary = build_tables(args)
    print_and_write_tables(summary, args.out, args.format)
    if args.report:
        from bench.cli.report import write_report

        write_report(args, summary)
    return 0
