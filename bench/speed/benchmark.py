"""Speed benchmark: `python -m bench.speed [--quick] [--csv PATH]` (also `make speed`).

Prints one table and writes it as CSV: per method, quantizer forward+backward time and peak memory at
(B, H, W, D, K) shapes; the lower bound for the same shapes (the distance matrix multiplication
alone); the peer implementation from vector-quantize-pytorch where it implements the same method,
measured in the same process on the same inputs; a full training step per preset with the
quantizer's share; and evaluation throughput per metric. Median of several repetitions after
warm-up; CUDA timings synchronize.
"""
from __future__ import annotations

import argparse
import csv
import ctypes
import gc
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from tabulate import tabulate

import methods
from bench.core.atomic import atomic_path
from bench.core.errors import UserError
from methods.base import nearest_codes, search_block_rows

COLUMNS = ["method", "K", "B", "H", "W", "D", "ms", "peak_mb", "peer", "peer_ms", "ratio_to_peer", "lower_bound_ms",
           "ratio_to_bound", "ratio_to_vqgan", "note"]


@dataclass(frozen=True)
class Shape:
    B: int
    H: int
    W: int
    D: int
    K: int

    @property
    def n(self) -> int:
        return self.B * self.H * self.W


# Paper-like latents (8 images of 16x16 tokens, 256-d codes) across codebook sizes, and the memory
# stress case: 65,536 latent vectors against 65,536 codes (a full distance matrix would be 16 GB).
FULL_SHAPES = [Shape(8, 16, 16, 256, k) for k in (512, 1024, 4096, 16384, 65536)]
STRESS_SHAPE = Shape(16, 64, 64, 32, 65536)
QUICK_SHAPES = [Shape(4, 16, 16, 64, k) for k in (512, 1024, 4096)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# A call slower than this is measured with fewer repetitions: the big shapes take seconds each.
_SLOW_CALL_MS = 1000.0


def _times_ms(fn: Callable[[], Any], device: torch.device, reps: int) -> list[float]:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def _warm(fn: Callable[[], Any], device: torch.device, warmup: int, reps: int) -> int:
    """Run the warm-up calls; returns the repetitions to measure (fewer for calls over a second)."""
    first = _times_ms(fn, device, 1)[0]
    if first > _SLOW_CALL_MS:
        return min(reps, 3)
    _times_ms(fn, device, warmup - 1)
    return reps


def median_ms(fn: Callable[[], Any], device: torch.device, warmup: int = 2, reps: int = 5) -> float:
    reps = _warm(fn, device, warmup, reps)
    return statistics.median(_times_ms(fn, device, reps))


def paired_median_ms(fn_a: Callable[[], Any], fn_b: Callable[[], Any], device: torch.device, warmup: int = 2,
                     reps: int = 5) -> tuple[float, float]:
    """Medians of two functions timed alternately (a, b, a, b, ...), so that a slow spell of a noisy
    machine hits both: their ratio is what the targets are about."""
    reps = min(_warm(fn_a, device, warmup, reps), _warm(fn_b, device, warmup, reps))
    a, b = [], []
    for _ in range(reps):
        a += _times_ms(fn_a, device, 1)
        b += _times_ms(fn_b, device, 1)
    return statistics.median(a), statistics.median(b)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _release_free_heap() -> None:
    """Hand freed heap pages back to the OS (glibc malloc_trim), so that the call's allocations show
    in the resident set again; after warm-up they would reuse pages already counted and read ~0 MB."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_mb(fn: Callable[[], Any], device: torch.device) -> float:
    """Peak memory above the level before the call: CUDA allocator peak on GPU; on the CPU, the
    resident set sampled every millisecond by a thread (Linux /proc), after freed heap pages are
    returned to the OS."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    if not os.path.exists("/proc/self/statm"):
        fn()
        return float("nan")
    _release_free_heap()
    base, peak, done = _rss_bytes(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.001)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        fn()
    finally:
        done.set()
        thread.join()
    return max(0, max(peak[0], _rss_bytes()) - base) / 2**20


def matmul_lower_bound_ms(shape: Shape, device: torch.device, reps: int) -> float:
    """The distance matrix multiplication alone, x (N, D) @ codebook.T (D, K), into a reused buffer:
    the fastest of several row-block sizes (one block of all rows where it fits in 512 MiB; a full
    65,536 x 65,536 product does not), so that no choice of the search's own blocks makes the bound
    easier to meet."""
    x = torch.randn(shape.n, shape.D, device=device)
    e = torch.randn(shape.K, shape.D, device=device)
    cap = max(1, (1 << 27) // shape.K)
    candidates = {min(shape.n, r) for r in (search_block_rows(shape.n, shape.K, device), 128, 512, 2048, cap) if r <= cap}
    best = float("inf")
    for rows in sorted(candidates):
        buf = torch.empty(rows, shape.K, device=device)

        def run(rows: int = rows, buf: torch.Tensor = buf) -> None:
            for s in range(0, shape.n, rows):
                chunk = x[s : s + rows]
                torch.mm(chunk, e.t(), out=buf[: len(chunk)])

        best = min(best, median_ms(run, device, warmup=1, reps=reps))
        del buf
    return best


# ---- peers (vector-quantize-pytorch), only where it implements the same method -------------------

def _peer_factories() -> dict[str, tuple[str, Callable[[Shape], torch.nn.Module], Callable[[torch.Tensor], Any]]]:
    """method -> (peer name, constructor at a shape, forward returning something to backprop)."""
    try:
        import vector_quantize_pytorch as vqp
    except ImportError:
        return {}

    def vq_forward(m):
        def f(z):
            quantized, _, loss = m(z)
            return quantized.sum() + loss.sum()
        return f

    peers: dict[str, Any] = {
        "vqgan": ("VectorQuantize(ema_update=False)", lambda s: vqp.VectorQuantize(
            dim=s.D, codebook_size=s.K, accept_image_fmap=True, ema_update=False, learnable_codebook=True,
            commitment_weight=0.25), vq_forward),
        "vqgan-ema": ("VectorQuantize(decay=0.99)", lambda s: vqp.VectorQuantize(
            dim=s.D, codebook_size=s.K, accept_image_fmap=True, decay=0.99, commitment_weight=0.25), vq_forward),
        "simvq": ("SimVQ", lambda s: vqp.SimVQ(dim=s.D, codebook_size=s.K, channel_first=True), vq_forward),
    }

    def lfq_forward(m):
        def f(z):
            quantized, _, loss = m(z)
            return quantized.sum() + loss.sum()
        return f

    def fsq_forward(m):
        def f(z):
            quantized, _ = m(z)
            return quantized.sum()
        return f

    peers["lfq"] = ("LFQ", lambda s: vqp.LFQ(dim=s.K.bit_length() - 1, codebook_size=s.K, channel_first=True,
                                             entropy_loss_weight=0.1, commitment_loss_weight=0.25), lfq_forward)
    peers["fsq"] = ("FSQ", lambda s: vqp.FSQ(levels=list(methods.create("fsq", s.K, s.D).levels), channel_first=True),
                    fsq_forward)
    return peers


def _fwd_bwd(module: torch.nn.Module, forward: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        module.zero_grad(set_to_none=True)
        z.grad = None
        forward(z).backward()
    return run


def _ours_forward(q: methods.Quantizer) -> Callable[[torch.Tensor], torch.Tensor]:
    def f(z):
        out = q(z)
        return out.z_q.sum() + out.loss
    return f


# Methods run at the stress shape: their search goes through the blocked `nearest_codes`, or they
# search no codebook at all (fsq), so memory stays bounded at any N x K. The others hold an (N, K)
# matrix by design (lfq's entropy, gumbel's logits, cvq's similarities, ibq's softmax: 16 GiB here).
STRESS_METHODS = ("vqgan", "vqgan-ema", "simvq", "fsq")


def _timed(name: str, shape: Shape, device: torch.device, dim: int | None = None):
    """(quantizer, its forward+backward closure) at a shape, seeded."""
    torch.manual_seed(0)
    q = methods.create(name, shape.K, dim or shape.D).to(device).train()
    z = torch.randn(shape.B, q.latent_channels, shape.H, shape.W, device=device, requires_grad=True)
    return q, _fwd_bwd(q, _ours_forward(q), z)


def quantizer_rows(names: list[str], shapes: list[Shape], device: torch.device, reps: int,
                   with_peers: bool = True, stress: Shape | None = None) -> list[dict[str, Any]]:
    """One row per (method, shape), plus the bare search; `stress` adds that shape for STRESS_METHODS."""
    peers = _peer_factories() if with_peers else {}
    names = sorted(names, key=lambda n: n != "vqgan")  # vqgan first: every row gets its ratio to it
    rows = []
    for shape in shapes + ([stress] if stress else []):
        is_stress = shape is stress
        bound = matmul_lower_bound_ms(shape, device, reps)
        x = torch.randn(shape.n, shape.D, device=device)
        e = torch.randn(shape.K, shape.D, device=device)

        def search(x: torch.Tensor = x, e: torch.Tensor = e) -> None:
            nearest_codes(x, e)

        rows.append(_row("nearest-code-search", shape, median_ms(search, device, warmup=1, reps=reps),
                         peak_mb(search, device), bound))
        del x, e, search
        vqgan = None
        for name in names:
            if is_stress and name not in STRESS_METHODS:
                continue
            try:
                q, run = _timed(name, shape, device)
            except UserError as exc:
                rows.append(_row(name, shape, None, None, bound, note=f"not run: {exc}"))
                continue
            row = _measure(name, q, run, shape, device, reps, bound, peers, vqgan)
            rows.append(row)
            if name == "vqgan":
                vqgan = (run, row["ms"])
            if name == "vqct" and vqgan is not None:
                # The same latent size as vqgan (VQCT's latent is two codes wide), as a user swapping
                # quantizers under one encoder with fixed output channels would see it.
                half, run_half = _timed(name, shape, device, dim=max(1, shape.D // 2))
                extra = _measure(name, half, run_half, shape, device, reps, bound, peers, vqgan)
                rows.append(dict(extra, method="vqct (dim D/2)", note="latent of D channels, as vqgan's"))
                del half, run_half
            del q, run
            gc.collect()
    return rows


def _measure(name: str, q: methods.Quantizer, run: Callable[[], None], shape: Shape, device: torch.device, reps: int,
             bound: float, peers: dict, vqgan: tuple[Callable[[], None], float] | None) -> dict[str, Any]:
    """Our time and its ratios. Timed alternately with the peer where one exists, and with vqgan for
    VQCT: those are the ratios the targets are about. `vqgan`: its closure and its time at this shape."""
    peer_ms = ref_ms = None
    note = ""
    if name in peers and shape.n * shape.K * 4 <= 2**31:
        peer_name, make, fwd = peers[name]
        torch.manual_seed(0)
        peer = make(shape).to(device).train()
        zp = torch.randn(shape.B, _peer_channels(name, shape, q), shape.H, shape.W, device=device, requires_grad=True)
        ms, peer_ms = paired_median_ms(run, _fwd_bwd(peer, fwd(peer), zp), device, reps=reps)
    elif name.startswith("vqct") and vqgan is not None:
        ms, ref_ms = paired_median_ms(run, vqgan[0], device, reps=reps)
    else:
        ms = median_ms(run, device, reps=reps)
        if name in peers:
            note = "peer not run: it materialises the full N x K distance matrix (> 2 GiB)"
    row = _row(name, shape, ms, peak_mb(run, device), bound, note=note)
    if peer_ms is not None:
        row.update(peer=peers[name][0], peer_ms=peer_ms, ratio_to_peer=ms / peer_ms)
    if vqgan is not None and name != "vqgan":
        row["ratio_to_vqgan"] = ms / (ref_ms or vqgan[1])
    return row


def _peer_channels(name: str, shape: Shape, q: methods.Quantizer) -> int:
    return q.latent_channels if name in ("lfq", "fsq") else shape.D


def _row(method: str, s: Shape, ms: float | None, peak: float | None, bound: float, note: str = "") -> dict[str, Any]:
    return {"method": method, "K": s.K, "B": s.B, "H": s.H, "W": s.W, "D": s.D, "ms": ms, "peak_mb": peak,
            "peer": "", "peer_ms": None, "ratio_to_peer": None, "lower_bound_ms": bound,
            "ratio_to_bound": None if ms is None else ms / bound, "ratio_to_vqgan": 1.0 if method == "vqgan" else None,
            "note": note}


# ---- full training step and evaluation throughput ------------------------------------------------

def train_step_rows(presets: list[str], method_names: list[str], device: torch.device, paper_batch: int | None,
                    reps: int) -> list[dict]:
    """Per preset and method: ms per full training step, images/s, and the quantizer's share of it.
    `paper_batch` replaces the paper preset's batch (8) where a full one would take too long."""
    from bench.runs.config import RunConfig, resolve
    from bench.training.step import TrainStep

    out = []
    for name, method in ((p, m) for p in presets for m in method_names):
        run = resolve(RunConfig(method=method, preset=name, codebook_size=1024))
        if paper_batch and name == "paper":
            run = run.with_train(batch_size=paper_batch)
        # a preset whose GAN ever starts is timed with it on (the steps that dominate a long run)
        run = run.with_train(disc_start=0 if run.train.disc_start < run.train.steps else 10**9)
        torch.manual_seed(0)
        learner = TrainStep(run, device)
        r, b = run.model.resolution, run.train.batch_size
        x = torch.rand(b, 3, r, r, device=device) * 2 - 1
        step_ms = median_ms(lambda: learner(x, 0), device, warmup=1, reps=reps)
        with torch.no_grad():
            z = learner.model.quant_conv(learner.model.encoder(x)).detach().requires_grad_(True)
        q = learner.model.quantizer
        q_ms = median_ms(_fwd_bwd(q, _ours_forward(q), z), device, reps=reps)
        out.append({"preset": name, "method": method, "batch": b, "resolution": r, "step_ms": step_ms,
                    "images_per_s": b / step_ms * 1e3, "quantizer_ms": q_ms, "quantizer_share": q_ms / step_ms,
                    "perceptual": learner.perceptual_name, "gan": run.train.disc_start == 0})
    return out


def eval_rows(device: torch.device, n: int, resolution: int, reps: int) -> list[dict]:
    from bench.evaluation.metrics import image_quality

    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (n, 3, resolution, resolution), generator=g, dtype=torch.uint8)
    b = (a.int() + torch.randint(-20, 21, a.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    metrics: dict[str, Callable[[], Any]] = {"psnr": lambda: image_quality.psnr(a, b),
                                              "ssim": lambda: image_quality.ssim(a, b)}
    metrics.update(_optional_eval_metrics(a, b, device))
    out = []
    for name, fn in metrics.items():
        ms = median_ms(fn, device, warmup=1, reps=reps)
        out.append({"metric": name, "images": n, "resolution": resolution, "ms": ms, "images_per_s": n / ms * 1e3})
    return out


def _optional_eval_metrics(a: torch.Tensor, b: torch.Tensor, device: torch.device) -> dict[str, Callable[[], Any]]:
    """LPIPS and FID features, when their weights are available here."""
    found: dict[str, Callable[[], Any]] = {}
    try:
        from bench.evaluation.metrics import lpips as lp

        net = lp.get_network("alex", device)
        found[net.name] = lambda: lp.distances(a, b, net=net)
    except Exception as exc:  # noqa: BLE001 - report, do not fail the benchmark
        print(f"(LPIPS throughput not measured: {exc})", file=sys.stderr)
    try:
        from bench.evaluation.metrics import fid

        extractor = fid.get_extractor(device)
        found["fid features (per image)"] = lambda: fid.inception_features(a, extractor=extractor)
    except Exception as exc:  # noqa: BLE001
        print(f"(FID throughput not measured: {exc})", file=sys.stderr)
    return found


def _fmt(rows: list[dict]) -> str:
    def cell(v: Any) -> Any:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
        return "" if v is None else v
    return tabulate([{k: cell(v) for k, v in r.items()} for r in rows], headers="keys", tablefmt="github")


def default_methods() -> list[str]:
    """Every registered method but the ablation variants (they cost what their base method costs)."""
    return [n for n in methods.available() if not methods.entry(n).defaults]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.speed", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a subset that runs in under a minute on 2 CPU cores")
    p.add_argument("--methods", default=None,
                   help="comma-separated methods (default: every registered one but the vqct-* ablations)")
    p.add_argument("--csv", type=Path, default=Path("results/speed.csv"), help="where to write the quantizer rows")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--no-stress", action="store_true", help="skip the 65,536 x 65,536 search shape")
    p.add_argument("--no-train-step", action="store_true", help="skip the full training-step timing")
    args = p.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        names = [methods.entry(n).name for n in args.methods.split(",")] if args.methods else default_methods()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    reps = 3 if args.quick else 5
    shapes = list(QUICK_SHAPES if args.quick else FULL_SHAPES)
    stress = None if args.quick or args.no_stress else STRESS_SHAPE
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    print(f"device: {device} ({where}), torch {torch.__version__}")
    rows = quantizer_rows(names, shapes, device, reps, stress=stress)
    print(f"\nquantizer forward+backward (ms, median of {reps}); lower bound = distance matmul alone")
    print(_fmt(rows))
    with atomic_path(args.csv) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    if not args.no_train_step:
        presets = ["cpu-tiny"] if args.quick else ["cpu-tiny", "paper"]
        paper_batch = None if device.type == "cuda" else 2
        step_methods = [m for m in ("vqgan", "vqct") if m in names] or names[:1]
        print(f"\nfull training step (K=1024{'; paper preset at batch 2 on the CPU' if paper_batch else ''})")
        print(_fmt(train_step_rows(presets, step_methods, device, paper_batch, reps=3 if args.quick else 2)))
    print("\nevaluation throughput")
    print(_fmt(eval_rows(device, n=16 if args.quick else 64, resolution=32, reps=reps)))
    print(f"\nwrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
