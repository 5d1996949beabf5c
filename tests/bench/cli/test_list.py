"""`run_bench.py --list` / `list`: every method's options with their defaults and meanings (read from
the Options dataclasses and their comments), variants by what they change, the presets (gpu among
them) with their numbers, and the released checkpoint kinds."""
from __future__ import annotations

import dataclasses

import methods
from bench.cli import list as list_cli
from bench.cli import main as cli
from bench.released import kinds
from bench.runs import presets


@dataclasses.dataclass
class _BaseOptions:
    # Inherited: the meaning above the field.
    # A second line of the same comment.
    shared: int = 1


@dataclasses.dataclass
class _ToyOptions(_BaseOptions):
    # --- a heading, not a meaning ---
    alpha: float = 0.5  # inline comment wins. Not this second sentence
    # above the field, Eq. 5 of the paper; the rest after the semicolon
    beta: str = "x"
    bare: bool = False
    items: list = dataclasses.field(default_factory=list)  # a factory default


def test_option_meanings_come_from_the_comments_beside_or_above_each_field():
    meanings = list_cli.option_meanings(_ToyOptions)
    assert meanings["shared"] == "Inherited: the meaning above the field"
    assert meanings["alpha"] == "inline comment wins"
    assert meanings["beta"] == "above the field, Eq. 5 of the paper; the rest after the semicolon"
    assert "bare" not in meanings  # no comment: no invented meaning
    assert meanings["items"] == "a factory default"


def _method_block(out: str, name: str) -> list[str]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"  {name} "))
    block = []
    for line in lines[start + 1:]:
        if not line.startswith("      "):
            break
        block.append(line.strip())
    return block


def test_list_shows_every_option_of_every_method_with_its_default(capsys):
    assert cli.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert cli.main(["list"]) == 0 and capsys.readouterr().out == out
    for name in methods.available():
        e = methods.entry(name)
        block = _method_block(out, name)
        if e.defaults and any(methods.entry(m).cls is e.cls and not methods.entry(m).defaults
                              for m in methods.available() if m != name):
            changed = ", ".join(f"{k}={v!r}" for k, v in e.defaults.items())
            assert block == [f"options: those of {block[0].split()[3].rstrip(',')}, with {changed}"], block
            continue
        defaults = methods.build_options(name)
        for f in dataclasses.fields(e.cls.Options):
            assert any(line.startswith(f"{f.name}={getattr(defaults, f.name)!r}") for line in block), (name, f.name)
    # the options issue 17 added to the nearest-neighbour methods, each with a meaning
    for option in ("kmeans_init=False", "threshold_ema_dead_code=0.0", "rotation_trick=False"):
        line = next(x for x in _method_block(out, "vqgan") if x.startswith(option))
        assert len(line.split(None, 1)) == 2, line
    assert any(x.startswith("levels=4 ") for x in _method_block(out, "rvq"))


def test_list_shows_presets_with_their_numbers_and_the_released_kinds(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    gpu = presets.PRESETS["gpu"]
    assert f"  gpu              {gpu.description}" in out
    assert "128 px, f=8 (16x16 tokens), ch 128, embed_dim 256; 20000 steps, global batch 16" in out
    assert f"this machine's default: {presets.default_preset()}" in out
    for name in presets.PRESETS:
        assert f"  {name:<16} " in out
    for kind in kinds():
        assert f"  {kind:<16} " in out
