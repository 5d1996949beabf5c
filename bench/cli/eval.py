"""`python run_bench.py eval --checkpoint KIND:PATH [...] --datasets ...`: evaluate released
tokenizers (files on this disk) under the protocol every trained run goes through, and print the
tables. Several --checkpoint flags and datasets make a grid, run by the same backends as `run`.

Every checkpoint is loaded here, in the driver, before the grid starts: a missing file, an unknown
kind, a key the adapter cannot place, a missing or misshapen key, or a pickle that needs code to be
read exits 2 with one line, and no run folder is made. Records are OUT/runs/<id>/record.json with
`"source": "released"` and the checkpoint's SHA-256 (bench.released.evaluate); a finished one for
the same files, dataset and evaluation settings is skipped unless --force.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bench.cli import parsing
from bench.cli.run import _add_scheduling_args, _dataset_settings, _scheduling, add_fid_reference_arg
from bench.cli.table import print_and_write_tables
from bench.core.errors import UserError
from bench.released.job import DEFAULT_EVAL_BATCH_SIZE, ReleasedEval
from bench.runs.runner import DEFAULT_OUT


def build_parser() -> argparse.ArgumentParser:
    from bench.released import kinds

    p = parsing.OneLineParser(
        prog="run_bench.py eval",
        description="Evaluate released tokenizer checkpoints (local files, nothing is downloaded) exactly as "
                    "trained runs are evaluated, and print the tables. See docs/checkpoints.md.")
    p.add_argument("--checkpoint", action="append", required=True, metavar="KIND:PATH",
                   help=f"a checkpoint to evaluate; KIND is one of {', '.join(kinds())} (repeatable: a grid of "
                        "checkpoints x datasets)")
    p.add_argument("--config", action="append", default=[], type=Path, metavar="PATH",
                   help="the YAML config of a taming/vqct checkpoint, or a vqbench record.json (default: found beside "
                        "the checkpoint); once per --checkpoint, in the same order")
    p.add_argument("--prior", action="append", default=[], type=Path, metavar="PATH",
                   help="vqct's word prior big_nlp_word_knowledge_clip.pkl (default: found in a codebook_priors/ "
                        "folder above the checkpoint); once per --checkpoint, in the same order")
    p.add_argument("--datasets", type=parsing.comma_list(str), default=["photos"],
                   help="comma-separated datasets (default: photos)")
    p.add_argument("--resolution", type=parsing.positive_int, default=None, metavar="N",
                   help="evaluation resolution (default: each tokenizer's training resolution; part of the run id)")
    p.add_argument("--eval-batch-size", type=parsing.positive_int, default=DEFAULT_EVAL_BATCH_SIZE, metavar="N",
                   help=f"images per evaluation batch (default: {DEFAULT_EVAL_BATCH_SIZE}; results do not depend on it)")
    p.add_argument("--num-workers", type=parsing.non_negative_int, default=0, metavar="N",
                   help="DataLoader workers reading the validation images (default: 0)")
    p.add_argument("--no-perceptual-metrics", action="store_true",
                   help="skip LPIPS, rFID and KID (recorded as None; part of the run id): seconds instead of minutes "
                        "per checkpoint on a CPU")
    add_fid_reference_arg(p)
    p.add_argument("--data-root", default=None,
                   help="folder holding the datasets (default: $VQBENCH_DATA, else ~/data; see docs/datasets.md)")
    p.add_argument("--dataset-path", type=parsing.dataset_path, action="append", default=[], metavar="NAME=PATH",
                   help="folder of one dataset, e.g. imagenet=/x/imagenet (repeatable)")
    p.add_argument("--dataset-option", type=parsing.dataset_option, action="append", default=[], metavar="KEY=VALUE",
                   help="a dataset option for every dataset, e.g. resize_filter=lanczos (repeatable; part of the run id)")
    parsing.add_dataset_args(p)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder (default: results/)")
    p.add_argument("--force", action="store_true", help="evaluate again checkpoints whose records are finished")
    p.add_argument("--no-progress", action="store_true", help="no progress line")
    _add_scheduling_args(p, data_parallel=False)  # an evaluation has no training to split over workers
    return p


def _per_checkpoint(values: list[Path], n: int, flag: str) -> list[Path | None]:
    """--config / --prior: none (found beside each checkpoint) or one per --checkpoint, in order."""
    if not values:
        return [None] * n
    if len(values) != n:
        raise UserError(f"{flag} was given {len(values)} time(s) for {n} --checkpoint(s); give it once per "
                        f"--checkpoint, in the same order, or not at all (then it is found beside each checkpoint)")
    return list(values)


def validated_checkpoints(opts: argparse.Namespace) -> list[tuple[str, str, str | None, str | None, dict[str, Any]]]:
    """(kind, path, config, prior, description) per --checkpoint, each loaded once now: every tensor
    read (safely), every key placed, shapes checked. A UserError names the first problem."""
    from bench.released import load_released, parse_spec

    specs = [parse_spec(s) for s in opts.checkpoint]  # every kind checked before any file is read
    configs = _per_checkpoint(opts.config, len(specs), "--config")
    priors = _per_checkpoint(opts.prior, len(specs), "--prior")
    out = []
    for (kind, path), config, prior in zip(specs, configs, priors):
        released = load_released(kind, path, config, prior)
        d = released.description
        del released  # only the description travels: each job loads the model where it runs
        out.append((kind, d["path"], None if config is None else str(config), None if prior is None else str(prior), d))
    return out


def _report(record: dict[str, Any]) -> None:
    c = record.get("config") or {}
    ck = record.get("checkpoint") or {}
    what = f"released {ck.get('kind')} {c.get('method')} K={c.get('codebook_size')} on {c.get('dataset')}"
    if record.get("skipped"):
        print(f"skipped {what}: finished before ({record['run_id']}; --force evaluates again)", flush=True)
    elif record["status"] == "finished":
        m = record["metrics"]
        fid = "n/a" if m.get("fid") is None else f"{m['fid']:.2f}"
        print(f"finished {what} in {record['wall_s']:.0f}s: rFID {fid}, PSNR {m['psnr']:.2f}, SSIM {m['ssim']:.4f}, "
              f"usage {100 * m['utilization']:.1f}%", flush=True)
    else:
        print(f"FAILED {what}: {record['error']}", file=sys.stderr, flush=True)


def run(opts: argparse.Namespace) -> int:
    from bench import api
    from bench.evaluation.metrics import fid_reference_choice
    from bench.reporting import tables

    scheduling = _scheduling(opts)  # a bad backend flag fails before any checkpoint is read
    fid_reference_choice.parse(opts.fid_reference)  # so does a bad --fid-reference
    data = _dataset_settings(opts)
    checkpoints = validated_checkpoints(opts)
    jobs = [ReleasedEval(kind=kind, path=path, description=d, dataset=dataset, config_path=config, prior_path=prior,
                         resolution=opts.resolution, eval_batch_size=opts.eval_batch_size, num_workers=opts.num_workers,
                         perceptual_metrics=not opts.no_perceptual_metrics, fid_reference=opts.fid_reference,
                         device=opts.device, **data)
            for kind, path, config, prior, d in checkpoints for dataset in opts.datasets]
    recs = api.run_grid(jobs, opts.out, force=opts.force, progress=not opts.no_progress,  # type: ignore[arg-type]
                        on_record=_report, **scheduling)
    built = tables.build(opts.out, methods=sorted({d["method"] for *_, d in checkpoints}), datasets=opts.datasets)
    print_and_write_tables(built, opts.out, "terminal")
    return 1 if any(r["status"] != "finished" for r in recs) else 0
