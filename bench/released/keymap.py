"""Placing a checkpoint's tensors onto a vqbench model, or saying exactly which key does not fit.

The mapping is driven by the TARGET: for every entry of the vqbench model's state dict, a rule says
which key(s) of the file make it. So every problem has a name in the file's own terms: a key the
file lacks ("missing key 'encoder.down.0.block.0.conv1.weight'"), a key whose shape differs from what
the configuration builds, or a key of the file that no target took (and that is not on the adapter's
list of keys it ignores on purpose, such as a loss network's weights).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from bench.core.errors import UserError


@dataclass(frozen=True)
class From:
    """Where one target tensor comes from in the file."""

    keys: tuple[str, ...]  # one key, or several concatenated along dim 0 (attention q, k, v -> qkv)
    squeeze_1x1: bool = False  # a 1x1 convolution weight (out, in, 1, 1) that is a linear weight (out, in) here


Rule = Callable[[str], "From | None"]  # target key -> its source, or None when this rule does not know it


def first_of(*rules: Rule) -> Rule:
    """The first rule that knows a target key."""

    def rule(key: str) -> From | None:
        for r in rules:
            found = r(key)
            if found is not None:
                return found
        return None

    return rule


def same_name(*prefixes: str) -> Rule:
    """Target keys under these prefixes have the same name in the file."""

    def rule(key: str) -> From | None:
        return From((key,)) if key.startswith(prefixes) else None

    return rule


def renamed(names: dict[str, str]) -> Rule:
    """Target key -> file key, spelled out (the quantizer's few tensors)."""

    def rule(key: str) -> From | None:
        return From((names[key],)) if key in names else None

    return rule


@dataclass
class Placement:
    state: dict[str, Tensor]  # the target's complete state dict
    ignored: dict[str, int] = field(default_factory=dict)  # ignored prefix -> how many keys of the file it covered


def place(tensors: dict[str, Tensor], target: nn.Module, rule: Rule, path: Path, *,
          ignore: dict[str, str] | None = None, given: dict[str, Tensor] | None = None,
          hint: str = "") -> Placement:
    """Build `target`'s state dict from `tensors` (the file's flat weights).

    `ignore`: key prefixes of the file that are left out on purpose, each with the reason (for the
    description). `given`: target entries that do not come from this file (a prior read from another
    file, a training counter). `hint` is added to shape errors (which config the shapes came from).
    Raises a one-line UserError naming the first key that is missing, misshapen or left over."""
    ignore, given = ignore or {}, given or {}
    expected = target.state_dict()
    state: dict[str, Tensor] = {}
    used: set[str] = set()
    for tkey, tval in expected.items():
        if tkey in given:
            value = given[tkey]
            if tuple(value.shape) != tuple(tval.shape):
                raise UserError(f"checkpoint {path}: {tkey} has shape {_shape(value)} from its other file, the "
                                f"configuration needs {_shape(tval)}{hint}")
            state[tkey] = value.to(tval.dtype)
            continue
        source = rule(tkey)
        if source is None:  # the adapter's rules do not cover its own model: a bug, not bad input
            raise RuntimeError(f"no rule places {tkey!r}")
        parts = []
        for k in source.keys:
            if k not in tensors:
                raise UserError(f"checkpoint {path}: missing key {k!r} (the configuration needs it for {tkey})")
            parts.append(tensors[k])
        want = list(tval.shape)
        if len(parts) > 1:  # equal thirds of a fused tensor along dim 0
            want[0] //= len(parts)
        for k, part in zip(source.keys, parts):
            shape = part.shape[:2] if source.squeeze_1x1 and part.shape[2:] == (1, 1) else part.shape
            if list(shape) != want:
                raise UserError(f"checkpoint {path}: key {k!r} has shape {_shape(part)}, the configuration needs "
                                f"{tuple(want) + ((1, 1) if source.squeeze_1x1 else ())}{hint}")
        value = torch.cat(parts, 0) if len(parts) > 1 else parts[0]
        state[tkey] = value.reshape(tval.shape).to(tval.dtype)
        used.update(source.keys)
    ignored = {p: 0 for p in ignore}
    leftover = []
    for k in tensors:
        if k in used:
            continue
        prefix = next((p for p in ignore if k.startswith(p)), None)
        if prefix is None:
            leftover.append(k)
        else:
            ignored[prefix] += 1
    if leftover:
        more = f" (and {len(leftover) - 1} more: {', '.join(leftover[1:4])}{', ...' if len(leftover) > 4 else ''})" \
            if len(leftover) > 1 else ""
        raise UserError(f"checkpoint {path}: could not place key {leftover[0]!r}{more} onto the shared "
                        f"autoencoder and quantizer; the file has parts this adapter does not know")
    return Placement(state, ignored)


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape)
