"""Bad input is refused with one line on stderr and exit code 2, before any run folder exists; and
good values given as text reach the options with their declared types."""
from __future__ import annotations

import dataclasses

import pytest

import methods
from bench.cli.main import main
from bench.core.errors import UserError

BAD = [
    (["--methods", "vqgan", "--option", "vqgan.beta=abc"], "option 'beta' must be a number, got 'abc'"),
    (["--methods", "vqgan", "--option", "vqgan.legacy=maybe"], "option 'legacy' must be true or false"),
    (["--methods", "vqgan", "--option", "vqgan.codebook_dim=2.5"], "option 'codebook_dim' must be an integer or None"),
    (["--methods", "vqgan", "--option", "vqgan.codebook_dim=17"], "codebook_dim must be in [1, 16]"),
    (["--methods", "vqgan", "--option", "vqgan.codebook_dim=0"], "option 'codebook_dim': must be >= 1, got 0"),
    (["--methods", "lfq", "--codebook-sizes", "1000"], "power of two"),
    (["--methods", "fsq", "--codebook-sizes", "1009"], "not a product of levels"),
    (["--methods", "vqct", "--codebook-sizes", "100000"], "larger than the prior's vocabulary"),
    (["--methods", "vqct", "--codebook-sizes", "4", "--option", "vqct.top_k=3"], "top_k=3 needs at least"),
    (["--methods", "vqgan", "--codebook-sizes", "10000000000"], "more than this machine's"),
    (["--methods", "vqgan", "--codebook-sizes", "0"], "must be a positive integer"),
    (["--methods", "vqgan", "--steps", "-3"], "must be a positive integer"),
    (["--methods", "vqgn"], "did you mean 'vqgan'"),
    # ranges, not only types (bench.core.option_ranges): NaN passes every `<` check, so finiteness is
    # checked on its own
    (["--methods", "vqgan", "--option", "vqgan.beta=nan"], "option 'beta': must be a finite number >= 0, got nan"),
    (["--methods", "vqgan", "--option", "vqgan.beta=-1"], "option 'beta': must be >= 0, got -1.0"),
    (["--methods", "vqgan-ema", "--option", "vqgan-ema.decay=1"], "option 'decay': must be in (0, 1), got 1.0"),
    (["--methods", "vqct", "--option", "vqct.dropout=inf"], "option 'dropout': must be a finite number in [0, 1)"),
    (["--methods", "fsq", "--option", "fsq.levels=8,1"], "option 'levels': each item must be >= 2, got (8, 1)"),
    (["--methods", "vqgan", "--steps", "99999999999999999999"], "steps must be at most 2,147,483,647"),
    (["--methods", "vqgan", "--seeds", "99999999999999999999"], "seed must be at most 2,147,483,647"),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[" ".join(a[1:]) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_no_run_folder(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    code = main([*argv, "--no-ray", "--preset", "smoke", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], err
    assert not out.exists()  # nothing was started: no results folder, so no run folder


def test_option_values_take_their_declared_types():
    opts = methods.build_options("vqgan", beta="0.5", legacy="true", codebook_dim="8", l2_normalize=0)
    assert (opts.beta, opts.legacy, opts.codebook_dim, opts.l2_normalize) == (0.5, True, 8, False)
    assert type(opts.beta) is float and type(opts.codebook_dim) is int
    assert methods.build_options("vqgan", codebook_dim="None").codebook_dim is None
    assert methods.build_options("fsq", levels="8,5,5,5").levels == (8, 5, 5, 5)
    assert methods.build_options("fsq", levels=[8, 5, 5, 5]).levels == (8, 5, 5, 5)
    assert methods.build_options("vqct", corpus=123).corpus == "123"  # a text option given a bare number
    with pytest.raises(UserError, match="option 'beta' must be a number, got True"):
        methods.build_options("vqgan", beta=True)  # a bool is not a number here
    with pytest.raises(UserError, match="option 'levels' must be a tuple of integers or None"):
        methods.build_options("fsq", levels="8,x")


def test_equal_values_in_other_spellings_make_the_same_run():
    from bench.runs.config import RunConfig, resolve

    a = resolve(RunConfig(method="vqgan", preset="smoke", codebook_size=16, method_options={"beta": 0.5}))
    b = resolve(RunConfig(method="vqgan", preset="smoke", codebook_size=16, method_options={"beta": "0.5"}))
    assert a.run_id == b.run_id


@pytest.mark.parametrize("name", methods.available())
def test_every_method_checks_before_it_builds(name):
    """`check` is a classmethod every quantizer has, and the defaults at a valid K pass it."""
    cls = methods.entry(name).cls
    k = 4096 if name in ("lfq",) else 1000 if name == "fsq" else 256
    options = methods.build_options(name)
    assert dataclasses.is_dataclass(options)
    methods.validate(name, k, 16, options)  # raises for an invalid combination; the default must be valid
    assert cls.parameter_count(k, 16, options) >= 0


@pytest.mark.parametrize("out", ["/proc/forbidden/results", "FILE/results"])
def test_an_unwritable_results_folder_is_refused_before_any_run(tmp_path, capsys, out):
    if out.startswith("FILE"):
        (tmp_path / "FILE").write_text("a file where a folder would go")
        out = str(tmp_path / out)
    code = main(["--methods", "vqgan", "--no-ray", "--preset", "smoke", "--out", out, "--no-progress"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and f"results folder {out}: cannot be created or written" in lines[0]


def test_the_writability_probe_leaves_no_folder_behind(tmp_path):
    from bench.core.writable import require_writable_folder

    require_writable_folder(tmp_path / "a" / "b")
    assert list(tmp_path.iterdir()) == []  # proved writable, created nothing that stays
    (tmp_path / "kept").mkdir()
    require_writable_folder(tmp_path / "kept")
    assert list((tmp_path / "kept").iterdir()) == []


def test_every_numeric_option_of_every_method_declares_its_range():
    import typing

    from bench.core.option_ranges import declared_range

    for name in methods.available():
        options = methods.entry(name).cls.Options
        hints = typing.get_type_hints(options)
        for f in dataclasses.fields(options):
            numeric = {int, float} & {hints[f.name], *typing.get_args(hints[f.name]),
                                      *(a for arg in typing.get_args(hints[f.name]) for a in typing.get_args(arg))}
            if numeric:
                assert declared_range(f) is not None, f"{name}.{f.name} declares no range"
            # and every default lies within its own range
            methods.build_options(name)
