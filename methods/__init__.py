"""Quantizers, one file per method, each registered by name.

    import methods
    methods.available()                       # ['vqgan', ...]
    q = methods.create("vqgan", codebook_size=1024, dim=64, beta=0.25)

Adding a method: write methods/<name>.py with a `@register_method("<name>")` Quantizer subclass and
add its import line below (see README, "Adding a method").
"""
# One import line per method file: importing registers it.
from . import (
    bsq,  # noqa: E402,F401
    cvq,  # noqa: E402,F401
    fsq,  # noqa: E402,F401
    gumbel,  # noqa: E402,F401
    ibq,  # noqa: E402,F401
    leech,  # noqa: E402,F401
    lfq,  # noqa: E402,F401
    msrq,  # noqa: E402,F401
    optvq,  # noqa: E402,F401
    pq,  # noqa: E402,F401
    rvq,  # noqa: E402,F401
    simvq,  # noqa: E402,F401
    vqct,  # noqa: E402,F401
    vqgan,  # noqa: E402,F401
    vqgan_ema,  # noqa: E402,F401
    vqgan_lc,  # noqa: E402,F401
    gsq,  # noqa: E402,F401
    mgvq,  # noqa: E402,F401
    fsp,  # noqa: E402,F401
    ifsq,  # noqa: E402,F401
    vqbridge,  # noqa: E402,F401
    diveq,  # noqa: E402,F401
    sf_diveq,  # noqa: E402,F401
)
from .base import Quantizer, QuantOut
from .registry import available, build_options, create, describe, entry, instantiate, register_method, validate

__all__ = ["QuantOut", "Quantizer", "available", "build_options", "create", "describe", "entry", "instantiate",
           "register_method", "validate"]
