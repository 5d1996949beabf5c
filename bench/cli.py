"""Command line: `python run_bench.py [run] ...`, `python run_bench.py table`, `python run_bench.py list`.

A thin layer over bench.api. Bad input prints one line and exits with code 2 before any work starts;
a finished benchmark with failed runs exits with code 1.
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path
from typing import Any, Sequence

from . import api, config, tables
from .errors import UserError
from .runner import DEFAULT_OUT

DEFAULT_METHODS = ("vqct", "vqgan")  # the seed paper against its base; every registered method if vqct is absent
DEFAULT_DATASETS = ("photos",)
DEFAULT_CODEBOOK_SIZES = (256,)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2, as argparse does)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(2)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {value}")
    return value


def _list(item_type):
    def parse(text: str) -> list:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError("empty list")
        return [item_type(t) for t in items]

    parse.__name__ = f"comma-separated {getattr(item_type, '__name__', 'value')} list"
    return parse


def _option(text: str) -> tuple[str, str, Any]:
    """METHOD.KEY=VALUE; VALUE is a Python literal (0.5, True, 'x', [1, 2]) or a bare string."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise argparse.ArgumentTypeError(f"expected METHOD.KEY=VALUE, got {text!r}")
    lhs, raw = text.split("=", 1)
    method, key = lhs.split(".", 1)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return method, key, value


def default_methods() -> list[str]:
    import methods

    names = methods.available()
    return list(DEFAULT_METHODS) if all(m in names for m in DEFAULT_METHODS) else names


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--methods", type=_list(str), default=None,
                   help="comma-separated methods (default: vqct,vqgan; every registered method until vqct exists)")
    p.add_argument("--datasets", type=_list(str), default=list(DEFAULT_DATASETS), help="comma-separated datasets (default: photos)")
    p.add_argument("--codebook-sizes", type=_list(_positive_int), default=list(DEFAULT_CODEBOOK_SIZES),
                   help="comma-separated codebook sizes K (default: 256)")
    p.add_argument("--seeds", type=_list(_non_negative_int), default=[0], help="comma-separated seeds (default: 0)")
    p.add_argument("--preset", default="cpu-tiny", help=f"one of {', '.join(config.PRESETS)} (default: cpu-tiny)")
    p.add_argument("--steps", type=_positive_int, default=None, help="training steps (default: the preset's)")
    p.add_argument("--option", type=_option, action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="a method option, e.g. vqgan.beta=0.5 (repeatable)")
    p.add_argument("--data-root", default=None, help="folder holding the datasets")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder (default: results/)")
    p.add_argument("--force", action="store_true", help="rerun finished runs instead of skipping them")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--list", action="store_true", help="list methods, datasets and presets, then exit")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="run_bench.py", description="Train and evaluate VQ image tokenizers that differ "
                           "only in their quantizer; print and save result tables.",
                           epilog="Subcommands: `table` rebuilds tables from existing records, `list` lists "
                           "methods, datasets and presets. Without a subcommand, runs the benchmark.")
    _add_run_args(parser)
    return parser


def build_table_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="run_bench.py table", description="Rebuild result tables from records on disk.")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder holding runs/ (default: results/)")
    p.add_argument("--methods", type=_list(str), default=None, help="only these methods")
    p.add_argument("--datasets", type=_list(str), default=None, help="only these datasets")
    p.add_argument("--format", choices=("terminal",) + tables.TABLE_FORMATS, default="terminal",
                   help="what to print (all formats are written under OUT/tables/)")
    return p


def list_everything() -> str:
    import datasets
    import methods

    lines = ["methods:"]
    lines += [f"  {name:<16} {desc}" for name, desc in methods.describe().items()]
    lines.append("datasets:")
    lines += [f"  {name:<16} {desc}" for name, desc in datasets.describe().items()]
    lines.append("presets:")
    lines += [f"  {p.name:<16} {p.description}" for p in config.PRESETS.values()]
    return "\n".join(lines)


def _method_options(chosen: list[str], options: list[tuple[str, str, Any]]) -> dict[str, dict[str, Any]]:
    per_method: dict[str, dict[str, Any]] = {}
    for method, key, value in options:
        if method not in chosen:
            raise UserError(f"--option {method}.{key}: method {method!r} is not among --methods ({','.join(chosen)})")
        per_method.setdefault(method, {})[key] = value
    return per_method


def cmd_run(args: argparse.Namespace) -> int:
    if args.list:
        print(list_everything())
        return 0
    chosen = args.methods or default_methods()
    per_method = _method_options(chosen, args.option)
    configs = [
        config.RunConfig(method=m, dataset=d, codebook_size=k, seed=s, preset=args.preset, steps=args.steps,
                         method_options=per_method.get(m, {}), data_root=args.data_root, device=args.device)
        for d in args.datasets for k in args.codebook_sizes for m in chosen for s in args.seeds
    ]

    def report(record: dict[str, Any]) -> None:
        c = record["config"]
        what = f"{c['method']} on {c['dataset']} K={c['codebook_size']} seed={c['seed']}"
        if record.get("skipped"):
            print(f"skipped {what}: finished before ({record['run_id']}; --force reruns)", flush=True)
        elif record["status"] == "finished":
            m = record["metrics"]
            print(f"finished {what} in {record['wall_s']:.0f}s: PSNR {m['psnr']:.2f}, SSIM {m['ssim']:.4f}, "
                  f"usage {100 * m['utilization']:.1f}%", flush=True)
        else:
            print(f"FAILED {what}: {record['error']}", file=sys.stderr, flush=True)

    recs = api.run_grid(configs, args.out, force=args.force, progress=not args.no_progress, on_record=report)
    df = api.table(args.out, methods=chosen, datasets=args.datasets)
    print(tables.render(df))
    paths = tables.write_tables(df, args.out)
    print(f"tables written: {', '.join(str(p) for p in paths)}")
    failed = [r for r in recs if r["status"] != "finished"]
    return 1 if failed else 0


def cmd_table(args: argparse.Namespace) -> int:
    df = api.table(args.out, methods=args.methods, datasets=args.datasets)
    if df.empty:
        raise UserError(f"no result records under {args.out / 'runs'}; run the benchmark first")
    tables.write_tables(df, args.out)
    print(tables.render(df, args.format))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["table"]:
            return cmd_table(build_table_parser().parse_args(argv[1:]))
        if argv[:1] == ["list"]:
            print(list_everything())
            return 0
        if argv[:1] == ["run"]:
            argv = argv[1:]
        return cmd_run(build_parser().parse_args(argv))
    except UserError as exc:
        print(f"run_bench.py: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("run_bench.py: interrupted; finished runs are saved and the next invocation resumes the rest",
              file=sys.stderr)
        return 130
