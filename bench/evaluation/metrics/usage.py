"""Code-usage statistics, computed in one place from indices accumulated over a whole split.

Counts are accumulated with `torch.bincount` across batches; statistics are taken from the final
histogram, never averaged per batch (per-batch utilisation overstates collapse on small batches).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from bench.evaluation.metrics import keys
from bench.evaluation.metrics.registry import HIGHER, LOWER, Metric, register_metric


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

    def stats(self) -> dict[str, float]:
        out = histogram_stats(self.counts)
        for name, (lo, hi) in self.groups.items():
            for metric, value in histogram_stats(self.counts[lo:hi]).items():
                out[keys.group_key(metric, name)] = value
        return out


def histogram_stats(counts: Tensor) -> dict[str, float]:
    """Utilisation (codes used / K), perplexity exp(H(p)) in nats, and dead codes of one histogram."""
    k = counts.numel()
    total = int(counts.sum())
    used = int((counts > 0).sum())
    if total == 0:
        return {keys.UTILIZATION: 0.0, keys.PERPLEXITY: 0.0, keys.DEAD_CODES: k}
    p = counts[counts > 0].double() / total
    entropy = float(-(p * p.log()).sum())
    return {keys.UTILIZATION: used / k, keys.PERPLEXITY: math.exp(entropy), keys.DEAD_CODES: k - used}


register_metric(Metric(keys.UTILIZATION, "Usage %", HIGHER, 1, scale=100.0,
                       description="codes used at least once over the evaluation split / K"))
register_metric(Metric(keys.PERPLEXITY, "Perplexity", None, 1, description="exp(entropy of the code histogram)"))
register_metric(Metric(keys.DEAD_CODES, "Dead codes", LOWER, 0, description="codes never used over the evaluation split"))
