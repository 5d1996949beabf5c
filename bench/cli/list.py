"""`python run_bench.py list` (and `--list`): methods with their options, datasets, presets, the
kinds of released checkpoint `eval` reads, and the metrics that need local weights (available, or
where to get them), one line each.

A method's options are the fields of its `Options` dataclass (methods/registry.py), so their names
and defaults come from the dataclass itself. Their meaning is the comment the method's author wrote
beside or above the field (the house style of methods/), read from the source here rather than
restated, so the listing cannot drift from the code: the first sentence of it, shortened to fit one
line. A registered variant (an ablation sharing its class with a method) lists only the defaults
it changes.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import re
import textwrap
import tokenize
from typing import Any

from bench.core.option_ranges import declared_range
from bench.runs import presets

MEANING_WIDTH = 96  # characters of an option's meaning before it is cut with "..."
_SECTION_RULE = re.compile(r"^-{2,}.*-{2,}$")  # "# --- the quantizer ---": a heading, not a meaning


def _comments_by_line(source: str) -> dict[int, str]:
    out = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                out[tok.start[0]] = tok.string.lstrip("#").strip()
    except (tokenize.TokenError, IndentationError):
        pass
    return out


def _class_field_comments(klass: type) -> dict[str, str]:
    """field name -> its comment in `klass`'s own source: the comment on the field's lines, else the
    comment lines right above it (a blank or code line ends that block)."""
    try:
        source = textwrap.dedent(inspect.getsource(klass))
    except (OSError, TypeError):  # defined in a REPL or built at run time: no source to read
        return {}
    lines = source.splitlines()
    comments = _comments_by_line(source)
    tree = ast.parse(source)
    node = tree.body[0] if tree.body and isinstance(tree.body[0], ast.ClassDef) else None
    out: dict[str, str] = {}
    for stmt in node.body if node else []:
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        inline = [comments[n] for n in range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1) if n in comments]
        above: list[str] = []
        n = stmt.lineno - 1
        while n >= 1 and lines[n - 1].strip().startswith("#") and n in comments:
            above.insert(0, comments[n])
            n -= 1
        text = " ".join(c for c in (inline or above) if c and not _SECTION_RULE.match(c))
        if text:
            out[stmt.target.id] = text
    return out


def option_meanings(options_cls: type) -> dict[str, str]:
    """field -> one-line meaning, for an Options dataclass and the dataclasses it inherits from (a
    subclass's own comment wins)."""
    out: dict[str, str] = {}
    for klass in reversed(options_cls.__mro__):
        if dataclasses.is_dataclass(klass):
            out.update(_class_field_comments(klass))
    return {name: _one_line(text) for name, text in out.items()}


def _one_line(text: str) -> str:
    # a sentence ends at "." or ";" after a word and before a capital: not "Eq. 5", "i.e. the", "x,... The"
    first = re.split(r"(?<=[^.\s][.;])\s+(?=[A-Z])", text, maxsplit=1)[0].rstrip(".;")
    return first if len(first) <= MEANING_WIDTH else first[: MEANING_WIDTH - 3].rstrip() + "..."


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return "(required)"


def method_lines(name: str) -> list[str]:
    """The option lines under one method: `name=default  meaning`, or a variant's changes."""
    import methods

    e = methods.entry(name)
    base = next((m for m in methods.available() if m != name and methods.entry(m).cls is e.cls
                 and not methods.entry(m).defaults), None)
    if e.defaults and base is not None:
        changed = ", ".join(f"{k}={v!r}" for k, v in e.defaults.items())
        return [f"      options: those of {base}, with {changed}"]
    fields = dataclasses.fields(e.cls.Options)
    if not fields:
        return ["      (no options)"]
    meanings = option_meanings(e.cls.Options)
    rows = []
    for f in fields:
        value = e.defaults.get(f.name, _default(f))
        valid = declared_range(f)
        shown = f"      {f.name}={value!r}" + ("" if valid is None else f" ({valid.text})")
        rows.append(shown.ljust(36) + f" {meanings.get(f.name, '')}".rstrip())
    return rows


def preset_facts(p: presets.Preset) -> str:
    """The numbers of a preset that decide cost and comparability, from its dataclasses."""
    m, t = p.model, p.train
    f = 2 ** (len(m.ch_mult) - 1)
    length = f"{t.epochs} epochs (steps from the training split's size)" if t.epochs is not None else f"{t.steps} steps"
    return (f"{m.resolution} px, f={f} ({m.resolution // f}x{m.resolution // f} tokens), ch {m.ch}, embed_dim "
            f"{m.embed_dim}; {length}, global batch {t.batch_size}, perceptual metrics "
            f"{'on' if t.perceptual_metrics else 'off'}")


def list_everything() -> str:
    import datasets
    import methods
    from bench.released import describe as released_kinds

    lines = ["methods:  (set an option with --option METHOD.KEY=VALUE; defaults shown)"]
    for name, desc in methods.describe().items():
        lines.append(f"  {name:<16} {desc}")
        lines += method_lines(name)
    lines.append("datasets:")
    lines += [f"  {name:<16} {desc}" for name, desc in datasets.describe().items()]
    default = presets.default_preset()
    lines.append(f"presets:  (--preset NAME; without it, this machine's default: {default})")
    for p in presets.PRESETS.values():
        lines.append(f"  {p.name:<16} {p.description}")
        lines.append(f"{'':<19}{preset_facts(p)}")
    lines.append("released checkpoint kinds:  (run_bench.py eval --checkpoint KIND:PATH; docs/checkpoints.md)")
    lines += [f"  {name:<16} {desc}" for name, desc in released_kinds().items()]
    lines += metric_lines()
    return "\n".join(lines)


def metric_lines() -> list[str]:
    """The metrics that need weights given with --metric-weights: available, or why not (one line)."""
    from bench.evaluation.metrics import metric_weights
    from bench.evaluation.metrics.registry import spec

    lines = [f"metrics with local weights:  ({metric_weights.FLAG} dinov2=PATH,clip=PATH; docs/metrics.md)"]
    for name, w in metric_weights.WEIGHTS.items():
        why = metric_weights.why_unavailable(name)
        key = {"dinov2": "fd_dinov2", "clip": "cmmd"}[name]
        state = f"available ({metric_weights.folder(name)})" if why is None else why
        lines.append(f"  {key:<16} {spec(key).label}, {w.network}: {state}")
    return lines


def build_parser() -> argparse.ArgumentParser:
    from bench.cli import parsing

    return parsing.OneLineParser(prog="run_bench.py list", description="List methods with their options, datasets, "
                                 "presets and released checkpoint kinds.")


def run(args: argparse.Namespace) -> int:
    print(list_everything())
    return 0
