"""Quantizers, one file per method, each registered by name.

    import methods
    methods.available()                       # ['vqgan', ...]
    q = methods.create("vqgan", codebook_size=1024, dim=64, beta=0.25)

Adding a method: write methods/<name>.py with a `@register_method("<name>")` Quantizer subclass and
add its import line below (see README, "Adding a method").
"""
from .base import QuantOut, Quantizer
from .registry import available, build_options, create, describe, entry, register_method

# One import line per method file: importing registers it.
from . import vqgan  # noqa: E402,F401
from . import vqgan_ema  # noqa: E402,F401
from . import lfq  # noqa: E402,F401
from . import fsq  # noqa: E402,F401
from . import simvq  # noqa: E402,F401
from . import cvq  # noqa: E402,F401
from . import gumbel  # noqa: E402,F401
from . import ibq  # noqa: E402,F401
from . import vqct  # noqa: E402,F401

__all__ = ["QuantOut", "Quantizer", "available", "build_options", "create", "describe", "entry", "register_method"]
