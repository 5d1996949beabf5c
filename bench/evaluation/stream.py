"""Every registered metric over one evaluation, fed batch by batch: per-image metrics append their
values, set metrics update their accumulators, and nothing keeps the images themselves, so memory
grows with the number of images only by the per-image values and the accumulated features.

The evaluator (a model's reconstructions of a split) and `evaluate_images` (two uint8 sets: the
metrics CLI) both go through `MetricStream`, so a run and the CLI compute every metric the same way:
in float32 with TF32 off, whatever autocast the caller has on (bench.evaluation.precision).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import Tensor

from bench.evaluation import precision
from bench.evaluation.metrics.registry import (PER_IMAGE, Accumulator, Batch, EvalContext, Metric, Prepared,
                                               all_metrics)

PERCEPTUAL_OFF = "switched off for this evaluation (perceptual=False)"


@dataclass
class Evaluation:
    """What one pass of metrics gives."""

    metrics: dict[str, Any]  # every metric this evaluation could compute: its value, or None
    protocol: dict[str, Any]  # how each was computed (entries by name: "psnr", "lpips", "fid", "usage", ...)
    per_image: dict[str, np.ndarray] = field(default_factory=dict)  # float64 (N,) per per-image metric that ran
    files: dict[str, np.ndarray] = field(default_factory=dict)  # arrays for the run folder, by file name
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # in memory only (fid_stream.FEATURES_ORIGINALS, ...)


class PerImageValues:
    """A per-image metric's values, appended batch by batch."""

    def __init__(self, metric: Metric, fn: Callable[[Tensor, Tensor], Any], entry: dict[str, Any] | None) -> None:
        self.metric, self.fn, self.entry = metric, fn, entry
        self._values: list[Tensor] = []
        self.seconds = 0.0

    def update(self, batch: Batch) -> None:
        t0 = time.perf_counter()
        values = torch.as_tensor(self.fn(batch.originals, batch.recons)).detach().to("cpu", torch.float64).reshape(-1)
        self.seconds += time.perf_counter() - t0
        if len(values) != len(batch.originals):
            raise ValueError(f"per-image metric {self.metric.key!r} gave {len(values)} values for "
                             f"{len(batch.originals)} images")
        self._values.append(values)

    def finish(self) -> tuple[np.ndarray, float, Any]:
        """(values, their mean, protocol entry)."""
        values = torch.cat(self._values)
        entry: Any = self.metric.description
        if self.entry is not None:
            entry = {**self.entry, "n_images": len(values), "seconds": self.seconds}
        return values.numpy(), float(values.mean()), entry


class MetricStream:
    """The registry's metrics over one evaluation. Built lazily at the first batch, whose image size
    some metrics need (AlexNet rejects very small images)."""

    def __init__(self, device: torch.device | str, batch_size: int, n_images: int,
                 reference: dict[str, Any] | None = None, use_cache: bool = True, codebook_size: int | None = None,
                 code_groups: dict[str, tuple[int, int]] | None = None, perceptual: bool = True,
                 reread_originals: Callable[[], Iterable[Tensor]] | None = None, fixed_reference: Any = None) -> None:
        self._ctx_args = dict(device=torch.device(device), batch_size=batch_size, n_images=n_images,
                              reference=dict(reference) if reference else None, use_cache=use_cache,
                              codebook_size=codebook_size, code_groups=dict(code_groups or {}),
                              reread_originals=reread_originals, fixed_reference=fixed_reference)
        self.perceptual = perceptual
        self.ctx: EvalContext | None = None
        self.seen = 0
        self._per_image: list[PerImageValues] = []
        self._sets: list[Accumulator] = []
        self._metrics: dict[str, Any] = {}
        self._protocol: dict[str, Any] = {}

    def _build(self, image_size: tuple[int, int]) -> None:
        self.ctx = ctx = EvalContext(image_size=image_size, **self._ctx_args)
        factories: dict[int, Accumulator] = {}  # one accumulator per factory: fid, kid and kid_std share one
        for m in all_metrics():
            if not ctx.has(m.reads):
                continue  # not part of this kind of evaluation (code usage without codes)
            self._metrics[m.key] = None
            if m.available is not None and not m.available(ctx):
                continue  # the other alternative runs here (ST-LPIPS instead of LPIPS)
            pkey = m.protocol_key or m.key
            if m.perceptual and not self.perceptual:
                self._protocol[pkey] = {"n_images": 0, "skipped": PERCEPTUAL_OFF}
            elif m.kind == PER_IMAGE:
                prepared = m.setup(ctx) if m.setup is not None else Prepared(m.fn, {})
                if prepared.fn is None:
                    self._protocol[pkey] = {**prepared.entry, "n_images": 0, "skipped": prepared.skipped}
                else:
                    self._per_image.append(PerImageValues(m, prepared.fn, prepared.entry if m.setup else None))
            elif id(m.accumulator) not in factories:
                factories[id(m.accumulator)] = m.accumulator(ctx)
        self._sets = list(factories.values())

    def update(self, batch: Batch) -> None:
        for t in (batch.originals, batch.recons):
            if t.dtype != torch.uint8:
                raise TypeError("image metrics take uint8 images: convert once at the evaluator's boundary")
        if batch.originals.shape != batch.recons.shape:
            raise ValueError(f"originals {tuple(batch.originals.shape)} and reconstructions "
                             f"{tuple(batch.recons.shape)} differ")
        with precision.evaluation_precision(self._ctx_args["device"].type):
            if self.ctx is None:
                self._build(tuple(batch.originals.shape[-2:]))
            for acc in (*self._per_image, *self._sets):
                acc.update(batch)
        self.seen += len(batch.originals)

    def finish(self) -> Evaluation:
        if self.ctx is None:
            raise ValueError("no images to evaluate")
        if self.seen != self.ctx.n_images:
            raise ValueError(f"evaluation expected {self.ctx.n_images} images and was given {self.seen}")
        with precision.evaluation_precision(self.ctx.device.type):
            return self._finish()

    def _finish(self) -> Evaluation:
        assert self.ctx is not None
        out = Evaluation(dict(self._metrics), {**self._protocol, "evaluation_precision": precision.DESCRIPTION})
        for acc in self._per_image:
            values, mean, entry = acc.finish()
            out.per_image[acc.metric.key] = values
            out.metrics[acc.metric.key] = mean
            out.protocol[acc.metric.protocol_key or acc.metric.key] = entry
        for s in self._sets:
            metrics, entries = s.finish()
            out.metrics.update(metrics)
            out.protocol.update(entries)
            out.files.update(s.files())
            out.arrays.update(s.arrays())
        return out


def evaluate_images(originals: Tensor, recons: Tensor, reference: dict[str, Any] | None = None,
                    batch_size: int = 64, device: torch.device | str = "cpu", perceptual: bool = True,
                    use_cache: bool = True, fixed_reference: Any = None) -> Evaluation:
    """Every image metric of reconstructions against their originals, both uint8 (N, 3, H, W), fed
    to the stream in batches of `batch_size` (the evaluator's batches for the same images);
    `fixed_reference` (fid_reference.fixed_reference) replaces the originals as rFID's reference."""
    for t in (originals, recons):
        if t.dtype != torch.uint8:
            raise TypeError("image metrics take uint8 images: convert once at the evaluator's boundary")
    if originals.shape != recons.shape:
        raise ValueError(f"originals {tuple(originals.shape)} and reconstructions {tuple(recons.shape)} differ")
    chunks = lambda t: (t[i : i + batch_size] for i in range(0, len(t), batch_size))  # noqa: E731
    stream = MetricStream(device, batch_size, len(originals), reference, use_cache, perceptual=perceptual,
                          reread_originals=lambda: chunks(originals), fixed_reference=fixed_reference)
    for a, b in zip(chunks(originals), chunks(recons)):
        stream.update(Batch(a, b))
    return stream.finish()
