"""`python -m bench.speed.inception [--quick] [--compile]`: the FID Inception-v3's throughput on this
machine against the bound set by its FLOPs, and what each setting does to it.

Four tables, every comparison timed round-robin in this one process (a shared machine's slow spells
hit every row alike; compare rows, not runs):
1. bound: the network's FLOPs per image (FlopCounterMode on one 299x299 image: convolutions, 2 per
   multiply-add) and the FLOP/s this machine reaches on a large fp32 matmul and on the network's
   largest convolution (Conv2d_4a_3x3), each turned into an images/s bound, timed in the same
   round-robin as the variants ("of bound" in every table is against the better of the two, timed
   in that table's own round-robin);
2. variants at one batch size: torch-fidelity as shipped (channels-first), channels-last (the
   extractor before `fid_fused`), batch norm folded, batch norm folded + ReLU fused (the evaluator's
   network now), bf16 autocast (not exact: reported only) and, with --compile, torch.compile. Each
   with images/s, speed-up over channels-last, share of the bound, its first call, and how far its
   pool3 features and an rFID (real 32 px `photos` val tiles against blurred copies) move from
   channels-last's;
3. the evaluator's network at several batch sizes;
4. the evaluator's network at 1 thread, at this process's thread count and at one thread per core.
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.cli import parsing
from bench.speed.output import fmt
from bench.speed.timing import interleaved_median_ms

CPU = torch.device("cpu")
SHIPPED = "channels-first (torch-fidelity as shipped)"
BEFORE = "channels-last (the extractor before)"
FOLDED = "batch norm folded"
KEPT = "batch norm folded + ReLU fused (kept)"
BF16 = "bf16 autocast (not exact: reported only)"
COMPILED = "torch.compile, inductor freezing (channels-last)"
LARGEST_CONV = "Conv2d_4a_3x3"  # 80 -> 192 channels, 3x3, at 73x73: the most multiply-adds of any layer
LARGEST_CONV_INPUT = (80, 73, 73)


@dataclass(frozen=True)
class Settings:
    images: int  # per set for the exactness check (originals, and blurred copies)
    batch: int  # batch of the variants table
    reps: int
    warmup: int  # round-robin rounds before timing (the variants table's exactness pass is its warm-up)
    bf16: bool  # the bf16 row (far slower than float32 on a CPU without native bf16 instructions)
    batches: tuple[int, ...]  # batch sizes of the batch table
    matmul_n: int
    conv_batch: int


FULL = Settings(images=8, batch=8, reps=3, warmup=1, bf16=True, batches=(1, 8, 64), matmul_n=2048, conv_batch=8)
QUICK = Settings(images=2, batch=2, reps=1, warmup=0, bf16=False, batches=(1, 2), matmul_n=256, conv_batch=1)


def sample_images(n: int, resolution: int = 32) -> tuple[Tensor, Tensor]:
    """n real uint8 tiles of `photos` val, spread over the split, and Gaussian-blurred copies (sigma 1):
    a pair of sets whose rFID is neither zero nor huge, like an evaluation's."""
    import datasets
    from torchvision.transforms.functional import gaussian_blur

    val = datasets.create("photos", "val", resolution).images
    x = val[:: max(1, len(val) // n)][:n].clone()
    y = gaussian_blur(x.float(), [7, 7], [1.0, 1.0]).round().clamp(0, 255).to(torch.uint8)
    return x, y


def flops_per_image(model: nn.Module) -> int:
    """FLOPs of one 299x299 image (2 per multiply-add), counted on the unfused network: the fused op
    is invisible to the counter, and fusing does not change the arithmetic that matters."""
    from torch.utils.flop_counter import FlopCounterMode

    from bench.evaluation.metrics.fid import INPUT_SIZE

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE, dtype=torch.uint8))
    return int(counter.get_total_flops())


def _pool3(model: nn.Module, autocast: bool = False) -> Callable[[Tensor], Tensor]:
    def run(x: Tensor) -> Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            return model(x)[0].float()
    return run


def build_variants(compile: bool = False, bf16: bool = True) -> tuple[dict[str, Callable[[Tensor], Tensor]], nn.Module]:
    """{row name: uint8 images -> pool3 features} and the unfused network (for counting FLOPs)."""
    from bench.evaluation.metrics import fid, fid_fused, fid_weights

    kept = fid.get_extractor(CPU)  # the evaluator's own network, as evaluations load it
    shipped = fid_weights.load_extractor(kept.weights.path)
    before = copy.deepcopy(shipped).to(memory_format=torch.channels_last)
    folded = fid_fused.fuse(copy.deepcopy(shipped)).to(memory_format=torch.channels_last)
    for m in folded.modules():
        if isinstance(m, fid_fused.ConvReLU):
            m.fused_relu = False  # the plain path: conv with the folded bias, then ReLU
    out = {SHIPPED: _pool3(shipped), BEFORE: _pool3(before), FOLDED: _pool3(folded), KEPT: _pool3(kept.model)}
    if bf16:
        out[BF16] = _pool3(before, autocast=True)
    if compile:
        import torch._inductor.config as inductor

        # Freezing lets inductor fold the batch norms and pre-pack the weights, where its gain on this
        # network comes from; it applies to this benchmark process only.
        inductor.freezing = True
        out[COMPILED] = _pool3(torch.compile(copy.deepcopy(before)))
    return out, shipped


def features(fn: Callable[[Tensor], Tensor], images: Tensor, batch: int) -> tuple[np.ndarray, float]:
    """(float64 features of `images` in batches, ms of the first batch: the one-off setup a fresh
    process or a new batch shape pays, compilation included)."""
    out, first = [], None
    for i in range(0, len(images), batch):
        t0 = time.perf_counter()
        out.append(fn(images[i : i + batch]))
        first = first if first is not None else (time.perf_counter() - t0) * 1e3
    return torch.cat(out).double().numpy(), float(first or 0.0)


def rfid(a: np.ndarray, b: np.ndarray) -> float:
    from bench.evaluation.metrics import fid

    return fid.frechet_distance(*fid.statistics(a), *fid.statistics(b))


class Bound:
    """The images/s that the network's FLOPs allow at the FLOP/s this machine reaches on a large fp32
    matmul and on the network's largest convolution alone (channels-last, with a bias). Its two calls
    join every round-robin below, so each table's bound is measured under the same load as its rows."""

    def __init__(self, unfused: nn.Module, s: Settings) -> None:
        self.flops = flops_per_image(unfused)
        n = self.n = s.matmul_n
        g = torch.Generator().manual_seed(0)
        a, b, out = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g), torch.empty(n, n)
        conv = getattr(unfused, LARGEST_CONV).conv
        w = conv.weight.detach().to(memory_format=torch.channels_last)
        bias = torch.zeros(w.shape[0])
        x = torch.randn(s.conv_batch, *LARGEST_CONV_INPUT, generator=g).to(memory_format=torch.channels_last)
        out_elems = F.conv2d(x[:1], w, bias, conv.stride, conv.padding).numel() * s.conv_batch
        self.conv_flops = 2 * out_elems * w.shape[1] * w.shape[2] * w.shape[3]
        self.conv_batch = s.conv_batch
        self.calls: dict[str, Callable[[], Any]] = {
            "_matmul": lambda: torch.mm(a, b, out=out),
            "_conv": lambda: F.conv2d(x, w, bias, conv.stride, conv.padding)}

    def gflops(self, ms: dict[str, float]) -> dict[str, float]:
        return {"matmul": 2 * self.n**3 / ms["_matmul"] / 1e6, "conv": self.conv_flops / ms["_conv"] / 1e6}

    def images_per_s(self, ms: dict[str, float]) -> float:
        """The better of the two rates, in images/s of this network."""
        return max(self.gflops(ms).values()) * 1e9 / self.flops

    def rows(self, ms: dict[str, float]) -> list[dict[str, Any]]:
        rate = self.gflops(ms)
        what = {"matmul": f"fp32 matmul {self.n}x{self.n} @ {self.n}x{self.n}",
                "conv": f"{LARGEST_CONV} alone (80->192, 3x3, 73x73, batch {self.conv_batch}, channels-last)"}
        return [{"what": "Inception-v3 to pool3, one 299x299 image", "GFLOP": self.flops / 1e9, "GFLOP/s": None,
                 "images/s bound": None},
                *({"what": what[k], "GFLOP": None, "GFLOP/s": v, "images/s bound": v * 1e9 / self.flops}
                  for k, v in rate.items())]


def variant_rows(variants: dict[str, Callable[[Tensor], Tensor]], s: Settings,
                 bound: Bound) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the variants table, the bound table measured in the same round-robin)."""
    x, y = sample_images(s.images)
    feats, first = {}, {}
    with torch.no_grad():
        for name, fn in variants.items():  # also each variant's warm-up
            fa, first[name] = features(fn, x, s.batch)
            feats[name] = (fa, features(fn, y, s.batch)[0])
        batch = x[: s.batch] if len(x) >= s.batch else x.repeat(math.ceil(s.batch / len(x)), 1, 1, 1)[: s.batch]
        calls = {n: (lambda fn=fn: fn(batch)) for n, fn in variants.items()} | bound.calls
        ms = interleaved_median_ms(calls, CPU, reps=s.reps, warmup=0)
    ref_a, ref_b = feats[BEFORE]
    ref_fid, scale = rfid(ref_a, ref_b), float(np.abs(ref_a).max())
    best = bound.images_per_s(ms)
    rows = []
    for name in variants:
        fa, fb = feats[name]
        diff = float(max(np.abs(fa - ref_a).max(), np.abs(fb - ref_b).max()))
        ips = s.batch / ms[name] * 1e3
        rows.append({"variant": name, "batch": s.batch, "threads": torch.get_num_threads(), "ms": ms[name],
                     "images/s": ips, "speed-up": ms[BEFORE] / ms[name], "of bound": ips / best,
                     "first call ms": first[name], "max abs diff": diff, "max rel diff": diff / scale,
                     "rFID": rfid(fa, fb), "rFID diff": rfid(fa, fb) - ref_fid})
    return rows, bound.rows(ms)


def batch_rows(fn: Callable[[Tensor], Tensor], s: Settings, bound: Bound) -> list[dict[str, Any]]:
    x, _ = sample_images(max(s.batches))
    calls = {str(b): (lambda b=b: fn(x[:b])) for b in s.batches} | bound.calls
    with torch.no_grad():
        ms = interleaved_median_ms(calls, CPU, reps=s.reps, warmup=s.warmup)
    best = bound.images_per_s(ms)
    return [{"batch": b, "threads": torch.get_num_threads(), "ms": ms[str(b)], "images/s": b / ms[str(b)] * 1e3,
             "of bound": b / ms[str(b)] * 1e3 / best} for b in s.batches]


def thread_rows(fn: Callable[[Tensor], Tensor], s: Settings, bound: Bound) -> list[dict[str, Any]]:
    """The network and the bound's calls at 1 thread, at this process's thread count and at one thread
    per core, all round-robin; each thread count's bound is its own."""
    most = torch.get_num_threads()
    counts = sorted({1, most, os.cpu_count() or 1})
    x, _ = sample_images(s.batch)

    def at(t: int, call: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            torch.set_num_threads(t)
            return call()
        return run

    calls = {f"{name}@{t}": at(t, call) for t in counts
             for name, call in {"net": lambda: fn(x), **bound.calls}.items()}
    try:
        with torch.no_grad():
            ms = interleaved_median_ms(calls, CPU, reps=s.reps, warmup=s.warmup)
    finally:
        torch.set_num_threads(most)
    rows = []
    for t in counts:
        mine = {k.split("@")[0]: v for k, v in ms.items() if k.endswith(f"@{t}")}
        ips = len(x) / mine["net"] * 1e3
        rows.append({"threads": t, "batch": len(x), "images/s": ips, "images/s per thread": ips / t,
                     "matmul GFLOP/s": bound.gflops(mine)["matmul"], "of bound": ips / bound.images_per_s(mine)})
    return rows


def parser() -> argparse.ArgumentParser:
    p = parsing.OneLineParser(prog="python -m bench.speed.inception", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="2 images, one repetition, no bf16 row: checks that it runs (about a minute)")
    p.add_argument("--compile", action="store_true", help="add torch.compile (minutes to compile on 2 cores)")
    p.add_argument("--threads", type=parsing.positive_int, default=None,
                   help="torch threads (default: torch's, every core)")
    p.add_argument("--reps", type=parsing.positive_int, default=None,
                   help="timed round-robin rounds (default: 3; quick: 1)")
    return p


def run(s: Settings, compile: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Every table: {"bound", "variants", "batch", "threads"}: rows."""
    variants, unfused = build_variants(compile=compile, bf16=s.bf16)
    bound = Bound(unfused, s)
    rows, bound_table = variant_rows(variants, s, bound)
    return {"bound": bound_table, "variants": rows, "batch": batch_rows(variants[KEPT], s, bound),
            "threads": thread_rows(variants[KEPT], s, bound)}


def report(tables: dict[str, list[dict[str, Any]]], s: Settings) -> str:
    return "\n\n".join([
        "bound: FLOPs per image against the FLOP/s this machine reaches (timed among the variants)\n"
        + fmt(tables["bound"]),
        f"variants (batch {s.batch}, median of {s.reps}, round-robin; diffs and speed-up against {BEFORE!r})\n"
        + fmt(tables["variants"]),
        f"batch size ({KEPT})\n" + fmt(tables["batch"]),
        f"threads ({KEPT}; each thread count against its own bound)\n" + fmt(tables["threads"])])


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    s = QUICK if args.quick else FULL
    if args.reps is not None:
        s = replace(s, reps=args.reps)
    print(f"Inception-v3 (FID, pool3) on the CPU: {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{torch.backends.cpu.get_cpu_capability()}\n")
    print(report(run(s, compile=args.compile), s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
