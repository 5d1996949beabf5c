"""Command line: `python run_bench.py [run|eval|table|report|list] ...`; without a subcommand, `run`.

A thin layer over bench.api: each subcommand is one module with `build_parser()` and `run(args)`.
Bad input prints one line and exits with code 2 before any work starts; a finished benchmark with
failed runs exits with code 1; Ctrl-C exits with 130 and the next invocation resumes.
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from bench.core.errors import UserError

SUBCOMMANDS = ("run", "eval", "table", "report", "list")  # each is the module bench.cli.<name>
DEFAULT = "run"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    name = argv[0] if argv[:1] and argv[0] in SUBCOMMANDS else DEFAULT
    rest = argv[1:] if argv[:1] == [name] else argv
    command = importlib.import_module(f"bench.cli.{name}")
    try:
        try:
            args = command.build_parser().parse_args(rest)
        except SystemExit as exc:  # argparse: --help (0) or a usage error it printed in one line (2)
            return int(exc.code or 0)
        return command.run(args)
    except UserError as exc:
        print(f"run_bench.py: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the machine, not the input: a full disk, a folder that cannot be written
        print(f"run_bench.py: error: {exc.strerror or exc} ({exc.filename or 'while writing results'}); "
              "what was written before is intact", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("run_bench.py: interrupted; finished runs are saved and the next invocation resumes the rest",
              file=sys.stderr)
        return 130
