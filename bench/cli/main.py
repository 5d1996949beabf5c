"""Command line: `python run_bench.py [run] ...`, `python run_bench.py table`, `python run_bench.py report`,
`python run_bench.py list`.

A thin layer over bench.api. Bad input prints one line and exits with code 2 before any work starts;
a finished benchmark with failed runs exits with code 1.
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path
from typing import Any, Sequence

from bench import api
from bench.core.errors import UserError
from bench.reporting import tables
from bench.runs import config, presets
from bench.runs.runner import DEFAULT_OUT

DEFAULT_METHODS = ("vqct", "vqgan")  # the seed paper against its base; every registered method if vqct is absent
DEFAULT_DATASETS = ("photos",)
DEFAULT_CODEBOOK_SIZES = (256,)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2, as argparse does)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(2)


def _number(cast: type, noun: str, ok, requirement: str):
    """An argparse type: `cast(text)` that must satisfy `ok`, else a one-line error."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text}")
        return value

    parse.__name__ = cast.__name__
    return parse


_positive_int = _number(int, "an integer", lambda v: v >= 1, "a positive integer")
_non_negative_int = _number(int, "an integer", lambda v: v >= 0, "a non-negative integer")
_positive_float = _number(float, "a number", lambda v: v > 0, "positive")
_non_negative_float = _number(float, "a number", lambda v: v >= 0, "zero or positive")


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


def _dataset_path(text: str) -> tuple[str, str]:
    """NAME=PATH; NAME may be an alias (adeg20k)."""
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name.strip(), path.strip()


def _dataset_option(text: str) -> tuple[str, Any]:
    """KEY=VALUE; VALUE is a Python literal or a bare string, as for --option."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key.strip(), value


def _dataset_settings(args: argparse.Namespace) -> dict[str, Any]:
    """RunConfig fields shared by every config of the grid; dataset names made canonical."""
    import datasets

    args.datasets = [datasets.canonical_name(d) for d in args.datasets]
    paths = {datasets.canonical_name(name): path for name, path in args.dataset_path}
    options = dict(args.dataset_option)
    if args.limit_val is not None:
        options["limit_val"] = args.limit_val
    return {"data_root": args.data_root, "dataset_paths": paths, "dataset_options": options,
            "dataset_cache": args.dataset_cache, "skip_bad_images": args.skip_bad_images}


def default_methods() -> list[str]:
    import methods

    names = methods.available()
    return list(DEFAULT_METHODS) if all(m in names for m in DEFAULT_METHODS) else names


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--methods", type=_list(str), default=None,
                   help="comma-separated methods (default: vqct,vqgan)")
    p.add_argument("--datasets", type=_list(str), default=list(DEFAULT_DATASETS), help="comma-separated datasets (default: photos)")
    p.add_argument("--codebook-sizes", type=_list(_positive_int), default=list(DEFAULT_CODEBOOK_SIZES),
                   help="comma-separated codebook sizes K (default: 256)")
    p.add_argument("--seeds", type=_list(_non_negative_int), default=[0], help="comma-separated seeds (default: 0)")
    p.add_argument("--preset", default="cpu-tiny", help=f"one of {', '.join(presets.PRESETS)} (default: cpu-tiny)")
    p.add_argument("--steps", type=_positive_int, default=None, help="training steps (default: the preset's)")
    p.add_argument("--option", type=_option, action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="a method option, e.g. vqgan.beta=0.5 (repeatable)")
    p.add_argument("--data-root", default=None,
                   help="folder holding the datasets (default: $VQBENCH_DATA, else ~/data; see docs/datasets.md)")
    p.add_argument("--dataset-path", type=_dataset_path, action="append", default=[], metavar="NAME=PATH",
                   help="folder of one dataset, e.g. ffhq=/x/ffhq (repeatable; overrides --data-root for it)")
    p.add_argument("--dataset-option", type=_dataset_option, action="append", default=[], metavar="KEY=VALUE",
                   help="a dataset option for every dataset, e.g. train_crop=center, hflip=False, "
                        "resize_filter=lanczos (repeatable; part of the run id)")
    p.add_argument("--limit-val", type=_positive_int, default=None, metavar="N",
                   help="evaluate on the first N validation images by sorted name (recorded; part of the run id)")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="skip unreadable image files and count them in the record instead of failing the run")
    p.add_argument("--dataset-cache", action="store_true",
                   help="decode each split once into a memory-mapped cache under $VQBENCH_CACHE and read it after")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the encoder, decoder and discriminator (worth it on a GPU for long runs; "
                        "recorded, not part of the run id)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder (default: results/)")
    p.add_argument("--force", action="store_true", help="rerun finished runs instead of skipping them")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--list", action="store_true", help="list methods, datasets and presets, then exit")
    _add_scheduling_args(p)


def _resource(text: str) -> tuple[str, float]:
    name, sep, amount = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=AMOUNT, got {text!r}")
    return name.strip(), _positive_float(amount)


def _add_scheduling_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scheduling", "Each run is a Ray task (docs/scheduling.md): a local Ray instance sized "
                             "to this machine by default, or a cluster with --ray-address.")
    g.add_argument("--no-ray", action="store_true", help="run the same jobs one after another in this process")
    g.add_argument("--ray-address", default=None, metavar="auto|HOST:PORT",
                   help="join a running Ray cluster (`ray start --head` ...) instead of starting a local instance")
    g.add_argument("--num-cpus", type=_positive_int, default=None, metavar="N",
                   help="CPUs of the local Ray instance (default: all of this machine's)")
    g.add_argument("--num-gpus", type=_non_negative_int, default=None, metavar="N",
                   help="GPUs of the local Ray instance (default: all of this machine's)")
    g.add_argument("--cpus-per-run", type=_positive_float, default=None, metavar="N",
                   help="CPUs each run asks for, also its torch thread count (default: 1)")
    g.add_argument("--gpus-per-run", type=_non_negative_float, default=None, metavar="N",
                   help="GPUs each run asks for; 0.5 packs two runs per GPU (default: 1 when the cluster has GPUs, "
                        "else 0)")
    g.add_argument("--memory-per-run", default=None, metavar="SIZE",
                   help="memory each run asks Ray for, e.g. 8G (default: not scheduled by memory)")
    g.add_argument("--resource", type=_resource, action="append", default=[], metavar="NAME=AMOUNT",
                   help="a custom Ray resource each run asks for, e.g. A100=1 (repeatable)")
    g.add_argument("--max-retries", type=_non_negative_int, default=None, metavar="N",
                   help="restarts of a run whose worker died (killed, out of memory, node lost), each from its last "
                        "checkpoint; errors of the run itself are never retried (default: 3)")


def _scheduling(args: argparse.Namespace) -> dict[str, Any]:
    """api.run_grid's keyword arguments for --no-ray or Ray."""
    from bench.scheduling import grid as scheduling

    given = [flag for flag, value in [("--ray-address", args.ray_address), ("--num-cpus", args.num_cpus),
                                      ("--num-gpus", args.num_gpus), ("--cpus-per-run", args.cpus_per_run),
                                      ("--gpus-per-run", args.gpus_per_run), ("--memory-per-run", args.memory_per_run),
                                      ("--resource", args.resource or None), ("--max-retries", args.max_retries)]
             if value is not None]
    if args.no_ray:
        if given:
            raise UserError(f"{', '.join(given)}: Ray options, but --no-ray runs in this process; "
                            "drop one or the other")
        return {"ray": False}
    resources = scheduling.Resources(
        cpus=1.0 if args.cpus_per_run is None else args.cpus_per_run, gpus=args.gpus_per_run,
        memory=None if args.memory_per_run is None else scheduling.parse_memory(args.memory_per_run),
        custom=dict(args.resource))
    return {"ray": True, "address": args.ray_address, "num_cpus": args.num_cpus, "num_gpus": args.num_gpus,
            "resources": resources,
            "max_retries": scheduling.DEFAULT_MAX_RETRIES if args.max_retries is None else args.max_retries}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="run_bench.py", description="Train and evaluate VQ image tokenizers that differ "
                           "only in their quantizer; print and save result tables.",
                           epilog="Subcommands: `table` rebuilds tables from existing records, `report` writes "
                           "figures and results/report.html, `list` lists methods, datasets and presets. "
                           "Without a subcommand, runs the benchmark.")
    _add_run_args(parser)
    return parser


def build_table_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="run_bench.py table", description="Rebuild result tables from records on disk.")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder holding runs/ (default: results/)")
    p.add_argument("--methods", type=_list(str), default=None, help="only these methods")
    p.add_argument("--datasets", type=_list(str), default=None, help="only these datasets")
    p.add_argument("--format", choices=tables.FORMATS, default="terminal",
                   help="what to print (md, csv and tex are all written under OUT/tables/ as well)")
    _add_table_view_args(p)
    p.add_argument("--report", action="store_true",
                   help="also write the figures (OUT/figures/) and the HTML report (OUT/report.html)")
    return p


def _add_table_view_args(p: argparse.ArgumentParser) -> None:
    """Choices shared by `table` and `report`: which metrics, what makes a row, published numbers."""
    p.add_argument("--metrics", type=_list(str), default=None,
                   help="metric columns in this order, e.g. fid,psnr,utilization_adj (default: rFID, PSNR, "
                        "SSIM, LPIPS or ST-LPIPS, usage, perplexity)")
    p.add_argument("--group-by", type=_list(str), default=list(tables.DEFAULT_GROUP_BY),
                   help=f"config fields that make one row, seeds averaged unless 'seed' is one; from "
                        f"{','.join(tables.GROUP_FIELDS)} (default: method,codebook_size; preset and steps are "
                        f"added whenever they vary)")
    p.add_argument("--with-reported", action="store_true",
                   help="add published numbers (bench/reported_results.csv) as rows marked 'reported'")


def build_report_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="run_bench.py report", description="Write the figures and the static HTML report "
                      "(tables, figures, protocol, environment, links to run folders) from records on disk.")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder holding runs/ (default: results/)")
    p.add_argument("--methods", type=_list(str), default=None, help="only these methods")
    p.add_argument("--datasets", type=_list(str), default=None, help="only these datasets")
    _add_table_view_args(p)
    p.add_argument("--path", type=Path, default=None, help="where to write the page (default: OUT/report.html)")
    return p


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
    data = _dataset_settings(args)
    configs = [
        config.RunConfig(method=m, dataset=d, codebook_size=k, seed=s, preset=args.preset, steps=args.steps,
                         method_options=per_method.get(m, {}), device=args.device, compile=args.compile, **data)
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

    recs = api.run_grid(configs, args.out, force=args.force, progress=not args.no_progress, on_record=report,
                        **_scheduling(args))
    built = tables.build(args.out, methods=chosen, datasets=args.datasets)
    _print_and_write_tables(built, args.out, "terminal")
    try:  # figures and report take seconds; a plotting problem must not hide the benchmark's outcome
        from bench.reporting import report as report_mod

        page = report_mod.write_report(args.out, built=built)
        print(f"figures written under {args.out / 'figures'}; report: {page}")
    except Exception as exc:  # noqa: BLE001 - reported, and the tables above are already on disk
        print(f"run_bench.py: warning: figures/report not written: {type(exc).__name__}: {exc}", file=sys.stderr)
    failed = [r for r in recs if r["status"] != "finished"]
    return 1 if failed else 0


def _print_and_write_tables(built: dict[str, Any], out: Path, fmt: str) -> None:
    summ, rep, fails, cross = built["summary"], built["reported"], built["failures"], built["cross"]
    print(tables.render(summ, fmt, rep, fails), end="")
    if cross is not None and fmt != "csv":  # one CSV per stream; the summary CSV is in OUT/tables/
        print()
        print(tables.render_cross(cross, fmt, rep), end="")
    paths = tables.write_tables(summ, out, reported=rep, failures=fails, cross=cross)
    if fmt == "terminal":
        print(f"tables written: {', '.join(str(p) for p in paths)}")


def _build_tables(args: argparse.Namespace) -> dict[str, Any]:
    try:
        built = tables.build(args.out, methods=args.methods, datasets=args.datasets, metrics=args.metrics,
                             group_by=args.group_by, with_reported=args.with_reported)
    except ValueError as exc:  # unknown metric or group-by field: one line, exit code 2
        raise UserError(str(exc)) from None
    if built["runs"].empty and not args.with_reported:
        raise UserError(f"no result records under {args.out / 'runs'}"
                        + (" for these --methods/--datasets" if args.methods or args.datasets else "")
                        + "; run the benchmark first")
    return built


def cmd_table(args: argparse.Namespace) -> int:
    built = _build_tables(args)
    _print_and_write_tables(built, args.out, args.format)
    if args.report:
        cmd_report_built(args, built)
    return 0


def cmd_report_built(args: argparse.Namespace, built: dict[str, Any]) -> int:
    from bench.reporting import report as report_mod

    page = report_mod.write_report(args.out, built=built, path=getattr(args, "path", None))
    print(f"report: {page}", file=sys.stderr if getattr(args, "format", "terminal") != "terminal" else sys.stdout)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    return cmd_report_built(args, _build_tables(args))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["table"]:
            return cmd_table(build_table_parser().parse_args(argv[1:]))
        if argv[:1] == ["report"]:
            return cmd_report(build_report_parser().parse_args(argv[1:]))
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
