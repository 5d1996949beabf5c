"""The metric registry: each metric declared once, with its record key, its label, which direction
is better and how it is shown, beside the function that computes it. The evaluator and the tables
loop over this registry; adding a metric is one `register_metric(...)` call plus its function.

Kinds of metric, by what their function takes:
- "per_image": fn(originals uint8 (N,3,H,W), reconstructions uint8) -> per-image values (N,) float64;
  the record holds their mean, the run folder every value (intervals and paired tests use them).
- "set": computed over the whole split by the evaluator's own code (rFID, KID from Inception
  features, code usage from the index histogram); `fn` is None here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from bench.core.registry import Registry

LOWER, HIGHER = "lower", "higher"
PER_IMAGE, SET = "per_image", "set"


@dataclass(frozen=True)
class Metric:
    key: str  # key in record["metrics"]
    label: str  # column header, without the arrow
    better: str | None  # LOWER, HIGHER, or None (no best marks, no arrow: perplexity)
    decimals: int = 2
    scale: float = 1.0  # shown as value * scale (utilisation is stored in [0, 1], shown in percent)
    kind: str = SET
    fn: Callable[..., Any] | None = None  # per_image metrics: (originals, reconstructions) -> (N,) values
    description: str = ""

    @property
    def arrow(self) -> str:
        return {LOWER: "↓", HIGHER: "↑"}.get(self.better or "", "")

    def header(self) -> str:
        return f"{self.label} {self.arrow}".strip()


def _check(key: str, metric: Metric) -> None:
    if metric.key != key:
        raise ValueError(f"metric registered as {key!r} has key {metric.key!r}")
    if metric.better not in (LOWER, HIGHER, None):
        raise ValueError(f"metric {key!r}: better must be {LOWER!r}, {HIGHER!r} or None, got {metric.better!r}")
    if metric.kind not in (PER_IMAGE, SET):
        raise ValueError(f"metric {key!r}: kind must be {PER_IMAGE!r} or {SET!r}, got {metric.kind!r}")
    if metric.kind == PER_IMAGE and metric.fn is None:
        raise ValueError(f"per-image metric {key!r} needs its function")


METRICS: Registry[Metric] = Registry("metric", _check)
# Each module declares its metrics beside its code; importing them fills the registry.
DECLARING_MODULES = ("image_quality", "lpips", "fid", "usage")


def register_metric(metric: Metric) -> Metric:
    return METRICS.add(metric.key, metric)


def load_all() -> Registry[Metric]:
    """The registry with every built-in metric declared (importing their modules once)."""
    import importlib

    for name in DECLARING_MODULES:
        importlib.import_module(f"bench.evaluation.metrics.{name}")
    return METRICS


# Usage statistics of one codebook group (VQCT: "adj", "noun") are keyed `<metric>_<group>`.
GROUPED = ("utilization", "perplexity", "dead_codes", "entropy_bits", "entropy_ratio")


def spec(key: str) -> Metric:
    """The declaration of a record key: registered, derived from a grouped usage metric
    (`utilization_adj`), or, for keys nobody declared, a plain column without best marks."""
    load_all()
    if key in METRICS:
        return METRICS.get(key)
    for base in GROUPED:
        if key.startswith(base + "_") and base in METRICS:
            parent = METRICS.get(base)
            return dataclasses.replace(parent, key=key, label=f"{parent.label} ({key[len(base) + 1:]})")
    return Metric(key, key, None, 3)


def per_image_metrics() -> list[Metric]:
    return [m for _, m in load_all().items() if m.kind == PER_IMAGE]
