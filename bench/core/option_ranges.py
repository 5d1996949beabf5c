"""The range of an option, declared beside its default in the Options dataclass:

    beta: float = option(0.25, NON_NEGATIVE)  # commitment weight

`check_value` refuses a value outside it with one line naming the option, the range and the value,
when the config is resolved, so `vqgan.beta=-1` never trains with a negative commitment weight.
Every float option must also be finite unless its range says otherwise: NaN passes every `<`
comparison, so a range written as `if x < 0` alone would let `beta=nan` train into a NaN failure.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable

from bench.core.errors import UserError

RANGE_KEY = "range"


@dataclass(frozen=True)
class Range:
    text: str  # what a valid value is, for messages and --list: ">= 0", "in (0, 1)"
    test: Callable[[Any], bool]


def at_least(low: float) -> Range:
    return Range(f">= {low:g}", lambda v: v >= low)


def interval(low: float, high: float, closed: str = "[]") -> Range:
    """`closed` is two characters: "[" or "(" for the low end, "]" or ")" for the high end."""
    left, right = closed
    return Range(f"in {left}{low:g}, {high:g}{right}",
                 lambda v: (v >= low if left == "[" else v > low) and (v <= high if right == "]" else v < high))


def _is_power_of_two(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and v > 0 and v & (v - 1) == 0


NON_NEGATIVE = at_least(0)
POSITIVE = Range("> 0", lambda v: v > 0)
AT_LEAST_ONE = at_least(1)
UNIT_OPEN = interval(0, 1, "()")  # decays and rates that must neither freeze nor forget at once
PROBABILITY = interval(0, 1, "[)")  # dropout: 1 would drop everything
POWER_OF_TWO = Range("a power of two", _is_power_of_two)


def option(default: Any, valid: Range) -> Any:
    """A dataclass field with its default and its range (the range is read by `check_value`)."""
    return dataclasses.field(default=default, metadata={RANGE_KEY: valid})


def declared_range(f: dataclasses.Field) -> Range | None:
    return f.metadata.get(RANGE_KEY)


def check_value(owner: str, f: dataclasses.Field, value: Any) -> None:
    """A UserError unless `value` (already of the field's type) is finite where it is a float and
    within the field's declared range; tuples and lists are checked item by item."""
    items = value if isinstance(value, (tuple, list)) else (value,)
    valid = declared_range(f)
    for item in items:
        if item is None or isinstance(item, (bool, str)):
            continue
        finite = not (isinstance(item, float) and not math.isfinite(item))
        if finite and (valid is None or not isinstance(item, numbers.Real) or valid.test(item)):
            continue
        need = " ".join(t for t in ("" if finite else "a finite number", "" if valid is None else valid.text) if t)
        each = "each item " if isinstance(value, (tuple, list)) else ""
        raise UserError(f"{owner} option {f.name!r}: {each}must be {need}, got {value!r}")


def check_fields(owner: str, options: Any) -> None:
    """`check_value` on every field of an Options instance (one built in Python, not from text)."""
    for f in dataclasses.fields(options):
        check_value(owner, f, getattr(options, f.name))
