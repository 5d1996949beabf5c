"""Options given by users (the command line's METHOD.KEY=VALUE, a Python dict) made into the types
their dataclass declares and checked against the range declared beside its default
(bench.core.option_ranges), before any run starts. A value that cannot be is a one-line UserError
naming the option, the type or range it needs and the value given: `vqgan.beta=abc` fails here, not as a
traceback from inside a forward pass, and `beta="0.5"` hashes into the same run id as `beta=0.5`.

Types understood: bool (True/False, 1/0, and the words true/false, yes/no, on/off), int (not bool,
not 2.5), float, str, tuples and lists of those (`(8, 5, 5, 5)` or the text "8,5,5,5"), and
`X | None` (None, or the text "none"). Any other declared type is passed through unchecked.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from bench.core.errors import UserError
from bench.core.option_ranges import check_value

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


class _Mismatch(Exception):
    pass


def coerce_options(owner: str, options_cls: type, given: dict[str, Any]) -> dict[str, Any]:
    """`given` with every value converted to its field's declared type; `owner` names the options
    in messages ("method 'vqgan'"). Unknown keys are the caller's to refuse."""
    hints = typing.get_type_hints(options_cls)
    fields = {f.name: f for f in dataclasses.fields(options_cls)}
    out = {}
    for key, value in given.items():
        if key not in fields:
            out[key] = value
            continue
        try:
            out[key] = _coerce(value, hints[key])
        except _Mismatch:
            raise UserError(f"{owner} option {key!r} must be {describe_type(hints[key])}, got {value!r}") from None
        check_value(owner, fields[key], out[key])
    return out


def describe_type(hint: Any) -> str:
    """`a float`, `an integer or None`, `a tuple of integers`: for messages."""
    args = typing.get_args(hint)
    if _is_union(hint):
        kinds = [describe_type(a) for a in args if a is not type(None)]
        return " or ".join(kinds) + (" or None" if type(None) in args else "")
    origin = typing.get_origin(hint)
    if origin in (tuple, list):
        item = args[0] if args else Any
        return f"a {origin.__name__} of {_plural(item)}"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


def _plural(hint: Any) -> str:
    return {bool: "booleans", int: "integers", float: "numbers", str: "strings"}.get(hint, str(hint))


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _coerce(value: Any, hint: Any) -> Any:
    if _is_union(hint):
        args = typing.get_args(hint)
        if type(None) in args and (value is None or (isinstance(value, str) and value.strip().lower() == "none")):
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg)
            except _Mismatch:
                continue
        raise _Mismatch
    origin = typing.get_origin(hint)
    if origin in (tuple, list):
        items = value
        if isinstance(value, str):
            items = [t.strip() for t in value.strip("()[] ").split(",") if t.strip()]
        if not isinstance(items, (list, tuple)):
            raise _Mismatch
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return origin(_coerce(v, item) for v in items)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise _Mismatch
    if hint is int:
        if isinstance(value, bool):
            raise _Mismatch
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise _Mismatch from None
        raise _Mismatch
    if hint is float:
        if isinstance(value, bool):
            raise _Mismatch
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                raise _Mismatch from None
        raise _Mismatch
    if hint is str:
        # the command line reads `corpus=123` as a number; for a text option it meant the text
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise _Mismatch
    return value
