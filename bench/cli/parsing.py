"""Argument types and the parser class every subcommand uses: one-line errors, bounded numbers,
comma-separated lists and KEY=VALUE options; and the dataset flags `run` and `eval` share."""
from __future__ import annotations

import argparse
import ast
import sys
from typing import Any


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2, as argparse does)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(2)


def number(cast: type, noun: str, ok, requirement: str):
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


positive_int = number(int, "an integer", lambda v: v >= 1, "a positive integer")
non_negative_int = number(int, "an integer", lambda v: v >= 0, "a non-negative integer")
positive_float = number(float, "a number", lambda v: v > 0, "positive")
non_negative_float = number(float, "a number", lambda v: v >= 0, "zero or positive")


def codebook_size(text: str) -> int | str:
    """A positive integer K, or `full`: the whole vocabulary of a method that has one (VQCT)."""
    return "full" if text.strip().lower() == "full" else positive_int(text)


codebook_size.__name__ = "codebook size"


def comma_list(item_type):
    def parse(text: str) -> list:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError("empty list")
        return [item_type(t) for t in items]

    parse.__name__ = f"comma-separated {getattr(item_type, '__name__', 'value')} list"
    return parse


def literal_or_text(raw: str) -> Any:
    """A Python literal (0.5, True, 'x', [1, 2]) when it is one, else the text itself. The option
    dataclasses then convert it to the declared type (bench.core.options)."""
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def option(text: str) -> tuple[str, str, Any]:
    """METHOD.KEY=VALUE; VALUE is a Python literal (0.5, True, 'x', [1, 2]) or a bare string."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise argparse.ArgumentTypeError(f"expected METHOD.KEY=VALUE, got {text!r}")
    lhs, raw = text.split("=", 1)
    method, key = lhs.split(".", 1)
    return method, key, literal_or_text(raw)


def dataset_path(text: str) -> tuple[str, str]:
    """NAME=PATH; NAME may be an alias (adeg20k)."""
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name.strip(), path.strip()


def dataset_option(text: str) -> tuple[str, Any]:
    """KEY=VALUE; VALUE is a Python literal or a bare string, as for --option."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), literal_or_text(raw)


def resource(text: str) -> tuple[str, float]:
    name, sep, amount = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=AMOUNT, got {text!r}")
    return name.strip(), positive_float(amount)


def add_dataset_args(p: argparse.ArgumentParser) -> None:
    """How the validation split is read and where the model runs, the same for `run` and `eval`."""
    p.add_argument("--limit-val", type=positive_int, default=None, metavar="N",
                   help="evaluate on the first N validation images by sorted name (recorded; part of the run id)")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="skip unreadable image files and count them in the record instead of failing the run")
    p.add_argument("--dataset-cache", action="store_true",
                   help="decode each split once into a memory-mapped cache under $VQBENCH_CACHE and read it after")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
