"""The metric registry: each metric declared once, with its record key, its label, which direction
is better and how it is shown, beside the function that computes it. The evaluator, the metrics CLI
and the tables loop over this registry; adding a metric is one `register_metric(...)` call plus its
function.

Kinds of metric, by what their function takes:
- "per_image": fn(originals uint8 (N,3,H,W), reconstructions uint8) -> per-image values (N,) float64;
  the record holds their mean, the run folder every value (intervals and paired tests use them).
  Images arrive batch by batch, so fn must treat images independently.
- "set": a statistic of the whole split (rFID and KID from Inception features, code usage from the
  index histogram). `accumulator(ctx)` builds an object that sees every batch (`update`) and gives
  the values at the end (`finish`); metrics computed together (fid, kid, kid_std) share one factory,
  which the evaluator calls once.

Which metrics run in one evaluation: those whose `reads` the evaluation has (the metrics CLI has no
codes), whose `available(ctx)` is true (of alternatives such as LPIPS and ST-LPIPS exactly one is
available on a machine), and, when the evaluation switches perceptual metrics off, not `perceptual`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

from bench.core.registry import Registry

if TYPE_CHECKING:  # the registry itself loads no torch: tables read declarations only
    import torch
    from torch import Tensor

LOWER, HIGHER = "lower", "higher"
PER_IMAGE, SET = "per_image", "set"
IMAGES, CODES = "images", "codes"  # what a metric reads


@dataclass(frozen=True)
class EvalContext:
    """What one evaluation offers its metrics. `image_size` is known from the first batch on."""

    device: torch.device
    batch_size: int
    n_images: int
    image_size: tuple[int, int]
    reference: dict[str, Any] | None = None  # the dataset's protocol: names the cached FID reference
    use_cache: bool = True  # whether the originals' FID statistics may come from (and go to) the cache
    codebook_size: int | None = None  # None: no code indices (the metrics CLI)
    code_groups: dict[str, tuple[int, int]] = field(default_factory=dict)
    # The originals again, batch by batch in the same order, for a metric that finds out at the end
    # that it needs another look (a stale FID reference cache entry).
    reread_originals: Callable[[], Any] | None = None
    # A --fid-reference other than val (fid_reference.fixed_reference: mu, sigma, features or None, and
    # info["label"]): rFID and KID compare the reconstructions with it instead of their originals.
    fixed_reference: Any = None

    def has(self, reads: str) -> bool:
        return reads == IMAGES or (reads == CODES and self.codebook_size is not None)


@dataclass
class Batch:
    """One evaluation batch, after the uint8 boundary."""

    originals: Tensor  # uint8 (B, 3, H, W), CPU
    recons: Tensor  # uint8 (B, 3, H, W), CPU
    indices: Tensor | None = None  # the quantizer's code indices of these images (None in the metrics CLI)


class Accumulator(Protocol):
    """A set metric's running state over one evaluation."""

    def update(self, batch: Batch) -> None: ...

    def finish(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(metric values by key, protocol entries by name)."""
        ...

    def files(self) -> dict[str, Any]:
        """Arrays for the run folder by file name (bench.core.run_folder), after `finish`."""
        ...

    def arrays(self) -> dict[str, Any]:
        """In-memory arrays for callers that resample (intervals), by name, after `finish`."""
        ...


@dataclass
class Prepared:
    """A per-image metric set up for one evaluation: the function to call on each batch (None when it
    cannot run on these images, `skipped` then says why) and its protocol entry."""

    fn: Callable[[Tensor, Tensor], Tensor] | None
    entry: dict[str, Any]
    skipped: str | None = None


@dataclass(frozen=True)
class Metric:
    key: str  # key in record["metrics"]
    label: str  # column header, without the arrow
    better: str | None  # LOWER, HIGHER, or None (no best marks, no arrow: perplexity)
    decimals: int = 2
    scale: float = 1.0  # shown as value * scale (utilisation is stored in [0, 1], shown in percent)
    kind: str = SET
    fn: Callable[..., Any] | None = None  # per_image metrics: (originals, reconstructions) -> (N,) values
    description: str = ""  # also the protocol entry of a per-image metric without `setup`
    reads: str = IMAGES
    perceptual: bool = False  # needs a pretrained network; skipped when an evaluation turns these off
    available: Callable[[EvalContext], bool] | None = field(default=None, compare=False)  # None: always
    # per_image metrics that need a network: setup(ctx) loads it once per evaluation and binds `fn`.
    setup: Callable[[EvalContext], Prepared] | None = field(default=None, compare=False)
    protocol_key: str | None = None  # the protocol entry it writes (default: key); LPIPS and ST-LPIPS share one
    # set metrics: builds the accumulator; metrics computed together share one factory.
    accumulator: Callable[[EvalContext], Accumulator] | None = field(default=None, compare=False)

    @property
    def arrow(self) -> str:
        return {LOWER: "↓", HIGHER: "↑"}.get(self.better or "", "")

    def header(self) -> str:
        return f"{self.label} {self.arrow}".strip()

    def runs_in(self, ctx: EvalContext) -> bool:
        """Whether this metric belongs to this evaluation at all (what it reads, which alternative)."""
        return ctx.has(self.reads) and (self.available is None or bool(self.available(ctx)))


def _check(key: str, metric: Metric) -> None:
    if metric.key != key:
        raise ValueError(f"metric registered as {key!r} has key {metric.key!r}")
    if metric.better not in (LOWER, HIGHER, None):
        raise ValueError(f"metric {key!r}: better must be {LOWER!r}, {HIGHER!r} or None, got {metric.better!r}")
    if metric.kind not in (PER_IMAGE, SET):
        raise ValueError(f"metric {key!r}: kind must be {PER_IMAGE!r} or {SET!r}, got {metric.kind!r}")
    if metric.reads not in (IMAGES, CODES):
        raise ValueError(f"metric {key!r}: reads must be {IMAGES!r} or {CODES!r}, got {metric.reads!r}")
    if metric.kind == PER_IMAGE and metric.fn is None and metric.setup is None:
        raise ValueError(f"per-image metric {key!r} needs its function")
    if metric.kind == SET and metric.accumulator is None:
        raise ValueError(f"set metric {key!r} needs its accumulator")


METRICS: Registry[Metric] = Registry("metric", _check)
# Each module declares its metrics beside its code; importing them fills the registry.
DECLARING_MODULES = ("image_quality", "lpips", "fid_stream", "usage", "embedding_metrics")


def register_metric(metric: Metric) -> Metric:
    return METRICS.add(metric.key, metric)


def load_all() -> Registry[Metric]:
    """The registry with every built-in metric declared (importing their modules once)."""
    import importlib

    for name in DECLARING_MODULES:
        importlib.import_module(f"bench.evaluation.metrics.{name}")
    return METRICS


# Tables never put two FID references in one column: a value measured against reference R (other than
# val) is shown in the column `<key>@R` (bench.reporting.fid_reference_columns), labelled "<label> (vs R)".
REFERENCE_SEPARATOR = "@"

# Usage statistics of one codebook group (VQCT: "adj", "noun") are keyed `<metric>_<group>`.
GROUPED = ("utilization", "perplexity", "dead_codes", "entropy_bits", "entropy_ratio")


def spec(key: str) -> Metric:
    """The declaration of a record key: registered, derived from a grouped usage metric
    (`utilization_adj`), or, for keys nobody declared, a plain column without best marks."""
    load_all()
    if key in METRICS:
        return METRICS.get(key)
    base, sep, reference = key.partition(REFERENCE_SEPARATOR)
    if sep and base in METRICS:  # a table column of one FID reference (bench.reporting.fid_reference_columns)
        parent = METRICS.get(base)
        return dataclasses.replace(parent, key=key, label=f"{parent.label} (vs {reference})")
    for base in GROUPED:
        if key.startswith(base + "_") and base in METRICS:
            parent = METRICS.get(base)
            return dataclasses.replace(parent, key=key, label=f"{parent.label} ({key[len(base) + 1:]})")
    return Metric(key, key, None, 3, accumulator=_undeclared)


def _undeclared(ctx: EvalContext) -> Accumulator:
    raise TypeError("a metric nobody declared cannot be computed")


def per_image_metrics() -> list[Metric]:
    return [m for _, m in load_all().items() if m.kind == PER_IMAGE]


def all_metrics() -> list[Metric]:
    """Every registered metric, in key order."""
    return [m for _, m in load_all().items()]
