import dataclasses

import pytest

import methods
from bench.core.errors import UserError
from methods.base import Quantizer
from methods.registry import register_method


def test_available_is_sorted_and_has_vqgan():
    names = methods.available()
    assert names == sorted(names) and "vqgan" in names


def test_unknown_method_suggests_the_closest_name():
    with pytest.raises(UserError, match=r"unknown method 'vqgn' \(did you mean 'vqgan'"):
        methods.create("vqgn", 16, 4)


def test_misspelt_option_fails_loudly():
    with pytest.raises(UserError, match=r"no option 'betta'.*did you mean 'beta'"):
        methods.create("vqgan", 16, 4, betta=0.3)


def test_bad_sizes_are_refused():
    with pytest.raises(UserError, match="codebook size"):
        methods.create("vqgan", 0, 4)
    with pytest.raises(UserError, match="dim"):
        methods.create("vqgan", 16, 0)


def test_duplicate_registration_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        register_method("vqgan")(type(methods.create("vqgan", 4, 2)))


def test_a_class_without_options_is_refused():
    class NoOptions(Quantizer):
        pass

    with pytest.raises(TypeError, match="Options"):
        register_method("no-options-test")(NoOptions)
    assert "no-options-test" not in methods.available()


def test_every_method_has_a_description_and_dataclass_options():
    for name, desc in methods.describe().items():
        assert desc, name
        assert dataclasses.is_dataclass(methods.entry(name).cls.Options)
