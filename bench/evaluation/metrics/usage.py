"""Code-usage statistics, computed in one place from indices accumulated over a whole split.

Counts are accumulated with `torch.bincount` across batches; statistics are taken from the final
histogram, never averaged per batch (per-batch utilisation overstates collapse on small batches).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from typing import Any

from bench.core import run_folder
from bench.evaluation.metrics import keys
from bench.evaluation.metrics.registry import CODES, HIGHER, LOWER, Batch, EvalContext, Metric, register_metric


class CodeUsage:
    """Histogram of code indices over a split. `groups` maps a name to an index range [start, stop)
    reported on its own as well (VQCT: "adj" and "noun")."""

    def __init__(self, codebook_size: int, groups: dict[str, tuple[int, int]] | None = None) -> None:
        self.codebook_size = int(codebook_size)
        self.groups = dict(groups or {})
        for name, (lo, hi) in self.groups.items():
            if not 0 <= lo < hi <= self.codebook_size:
                raise ValueError(f"group {name!r} range [{lo}, {hi}) is outside [0, {self.codebook_size})")
        self.counts = torch.zeros(self.codebook_size, dtype=torch.long)

    def update(self, indices: Tensor) -> None:
        flat = indices.detach().reshape(-1).to("cpu", torch.long)
        if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= self.codebook_size):
            raise ValueError(f"code index out of range [0, {self.codebook_size}): {int(flat.min())}..{int(flat.max())}")
        self.counts += torch.bincount(flat, minlength=self.codebook_size)

    def stats(self) -> dict[str, float | None]:
        out = histogram_stats(self.counts)
        for name, (lo, hi) in self.groups.items():
            for metric, value in histogram_stats(self.counts[lo:hi]).items():
                out[keys.group_key(metric, name)] = value
        return out


def histogram_stats(counts: Tensor) -> dict[str, float | None]:
    """Statistics of one histogram of K codes: utilisation (codes used / K), perplexity exp(H) with H
    in nats, dead codes, entropy H in bits and its ratio to the most a histogram of K codes can have,
    log2 K (None for K = 1, where both are 0). An empty histogram has zeros throughout."""
    k = counts.numel()
    total = int(counts.sum())
    used = int((counts > 0).sum())
    if total == 0:
        return {keys.UTILIZATION: 0.0, keys.PERPLEXITY: 0.0, keys.DEAD_CODES: k, keys.ENTROPY_BITS: 0.0,
                keys.ENTROPY_RATIO: 0.0}
    p = counts[counts > 0].double() / total
    entropy = float(-(p * p.log()).sum())
    bits = entropy / math.log(2)
    return {keys.UTILIZATION: used / k, keys.PERPLEXITY: math.exp(entropy), keys.DEAD_CODES: k - used,
            keys.ENTROPY_BITS: bits, keys.ENTROPY_RATIO: bits / math.log2(k) if k > 1 else None}


class UsageAccumulator:
    """The evaluator's view of CodeUsage: every batch's indices into one histogram."""

    def __init__(self, ctx: EvalContext) -> None:
        assert ctx.codebook_size is not None  # `reads=CODES` keeps this metric out of evaluations without codes
        self.usage = CodeUsage(ctx.codebook_size, ctx.code_groups)

    def update(self, batch: Batch) -> None:
        if batch.indices is None:
            raise ValueError("code usage needs the code indices of every batch")
        self.usage.update(batch.indices)

    def finish(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return self.usage.stats(), {"usage": "bincount of indices over the whole split"}

    def files(self) -> dict[str, Any]:
        return {run_folder.CODE_COUNTS: self.usage.counts.numpy()}

    def arrays(self) -> dict[str, Any]:
        return {"code_counts": self.usage.counts.numpy()}


def _usage(key: str, label: str, better: str | None, decimals: int, description: str, scale: float = 1.0) -> None:
    register_metric(Metric(key, label, better, decimals, scale=scale, reads=CODES, accumulator=UsageAccumulator,
                           description=description))


_usage(keys.UTILIZATION, "Usage %", HIGHER, 1, "codes used at least once over the evaluation split / K", scale=100.0)
_usage(keys.PERPLEXITY, "Perplexity", None, 1, "exp(entropy of the code histogram)")
_usage(keys.DEAD_CODES, "Dead codes", LOWER, 0, "codes never used over the evaluation split")
_usage(keys.ENTROPY_BITS, "Entropy (bits)", None, 2, "entropy of the code histogram in bits")
_usage(keys.ENTROPY_RATIO, "Entropy / log2 K", HIGHER, 3, "entropy in bits over log2 K (1: all codes used equally)")
