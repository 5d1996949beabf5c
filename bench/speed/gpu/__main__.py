"""`python -m bench.speed.gpu SECTION --summary PATH --device cuda|cpu [--quick]`: one section of the
GPU check appended to the summary (see bench/speed/gpu/__init__.py). Exit 0 when the section ran (a
failing row carries its error and the section goes on), 1 when it stopped, 2 on bad arguments."""
from __future__ import annotations

import importlib
import sys
import traceback
from pathlib import Path

from bench.cli.parsing import OneLineParser

# SECTION -> its module in this package
SECTIONS = {"peak": "peak", "steps": "steps", "eval": "evaluation", "search": "search", "resume": "resume"}


def parser() -> OneLineParser:
    p = OneLineParser(prog="python -m bench.speed.gpu", description=__doc__.splitlines()[0])
    p.add_argument("section", metavar="SECTION", choices=list(SECTIONS),
                   help=f"one of {', '.join(SECTIONS)}")
    p.add_argument("--summary", type=Path, required=True, help="markdown file the section's table is appended to")
    p.add_argument("--device", choices=["cuda", "cpu"], required=True)
    p.add_argument("--quick", action="store_true", help="small sizes: the CPU rehearsal, seconds per section")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)  # before importing torch: a bad argument answers at once
    import torch

    from bench.speed.gpu.section import Context

    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"python -m bench.speed.gpu: error: --device cuda, but torch {torch.__version__} (built for CUDA "
              f"{torch.version.cuda}) sees no usable GPU; check the driver (nvidia-smi) or use --device cpu",
              file=sys.stderr)
        return 2
    args.summary.parent.mkdir(parents=True, exist_ok=True)  # peak.json may be written before any table
    from bench.gpu.bundled import use_bundled_prior

    use_bundled_prior()  # inside the check, VQCT's default prior is the carried one; elsewhere a no-op
    ctx = Context(args.summary, torch.device(args.device), args.quick)
    module = importlib.import_module(f"bench.speed.gpu.{SECTIONS[args.section]}")
    try:
        module.run(ctx)
    except Exception as exc:  # noqa: BLE001 - the summary says where it stopped; the traceback goes to stderr
        ctx.crashed(args.section, exc)
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
