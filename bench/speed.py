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
from bench.errors import UserError
from methods.base import nearest_codes

COLUMNS = ["method", "K", "B", "H", "W", "D", "ms", "peak_mb", "peer", "peer_ms", "ratio_to_peer", "lower_bound_ms",
           "ratio_to_bound", "note"]


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


def median_ms(fn: Callable[[], Any], device: torch.device, warmup: int = 2, reps: int = 5) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_mb(fn: Callable[[], Any], device: torch.device) -> float:
    """Peak memory above the level before the call: CUDA allocator peak on GPU; on the CPU, the
    resident set sampled every millisecond by a thread (Linux /proc)."""
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
    """The distance matrix multiplication alone, x (N, D) @ codebook.T (D, K), in the same row chunks
    as the search (a full 65,536 x 65,536 product does not fit in memory), into a reused buffer."""
    x = torch.randn(shape.n, shape.D, device=device)
    e = torch.randn(shape.K, shape.D, device=device)
    rows = min(shape.n, max(1, (1 << 27) // shape.K))
    buf = torch.empty(rows, shape.K, device=device)

    def run() -> None:
        for s in range(0, shape.n, rows):
            chunk = x[s : s + rows]
            torch.mm(chunk, e.t(), out=buf[: len(chunk)])

    return median_ms(run, device, warmup=1, reps=reps)


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


def quantizer_rows(names: list[str], shapes: list[Shape], device: torch.device, reps: int,
                   with_peers: bool = True) -> list[dict[str, Any]]:
    peers = _peer_factories() if with_peers else {}
    rows = []
    for shape in shapes:
        bound = matmul_lower_bound_ms(shape, device, reps)
        # Nearest-code search alone: the part that must stay near the matmul bound.
        x = torch.randn(shape.n, shape.D, device=device)
        e = torch.randn(shape.K, shape.D, device=device)
        search = lambda: nearest_codes(x, e)  # noqa: E731
        ms = median_ms(search, device, warmup=1, reps=reps)
        rows.append(_row("nearest-code-search", shape, ms, peak_mb(search, device), bound))
        del x, e
        for name in names:
            try:
                torch.manual_seed(0)
                q = methods.create(name, shape.K, shape.D).to(device).train()
            except UserError as exc:
                rows.append(_row(name, shape, None, None, bound, note=f"not run: {exc}"))
                continue
            z = torch.randn(shape.B, q.latent_channels, shape.H, shape.W, device=device, requires_grad=True)
            run = _fwd_bwd(q, _ours_forward(q), z)
            row = _row(name, shape, median_ms(run, device, reps=reps), peak_mb(run, device), bound)
            if name in peers and shape.n * shape.K * 4 <= 2**31:
                peer_name, make, fwd = peers[name]
                torch.manual_seed(0)
                peer = make(shape).to(device).train()
                zp = torch.randn(shape.B, _peer_channels(name, shape, q), shape.H, shape.W, device=device,
                                 requires_grad=True)
                peer_ms = median_ms(_fwd_bwd(peer, fwd(peer), zp), device, reps=reps)
                row.update(peer=peer_name, peer_ms=peer_ms, ratio_to_peer=row["ms"] / peer_ms)
            elif name in peers:
                row["note"] = "peer not run: it materialises the full N x K distance matrix (> 2 GiB)"
            rows.append(row)
            del q, z
            gc.collect()
    return rows


def _peer_channels(name: str, shape: Shape, q: methods.Quantizer) -> int:
    return q.latent_channels if name in ("lfq", "fsq") else shape.D


def _row(method: str, s: Shape, ms: float | None, peak: float | None, bound: float, note: str = "") -> dict[str, Any]:
    return {"method": method, "K": s.K, "B": s.B, "H": s.H, "W": s.W, "D": s.D, "ms": ms, "peak_mb": peak,
            "peer": "", "peer_ms": None, "ratio_to_peer": None, "lower_bound_ms": bound,
            "ratio_to_bound": None if ms is None else ms / bound, "note": note}


# ---- full training step and evaluation throughput ------------------------------------------------

def train_step_rows(presets: list[str], method: str, device: torch.device, batch: int | None, reps: int) -> list[dict]:
    from bench.config import RunConfig, resolve
    from bench.trainer import TrainStep

    out = []
    for name in presets:
        resolved = resolve(RunConfig(method=method, preset=name, codebook_size=1024))
        if batch:
            resolved["train"]["batch_size"] = batch
        resolved["train"]["disc_start"] = 0 if resolved["train"]["disc_start"] < resolved["train"]["steps"] else 10**9
        torch.manual_seed(0)
        learner = TrainStep(resolved, device)
        r, b = resolved["model"]["resolution"], resolved["train"]["batch_size"]
        x = torch.rand(b, 3, r, r, device=device) * 2 - 1
        step_ms = median_ms(lambda: learner(x, 0), device, warmup=1, reps=reps)
        with torch.no_grad():
            z = learner.model.quant_conv(learner.model.encoder(x)).detach().requires_grad_(True)
        q = learner.model.quantizer
        q_ms = median_ms(_fwd_bwd(q, _ours_forward(q), z), device, reps=reps)
        out.append({"preset": name, "method": method, "batch": b, "resolution": r, "step_ms": step_ms,
                    "images_per_s": b / step_ms * 1e3, "quantizer_ms": q_ms, "quantizer_share": q_ms / step_ms,
                    "perceptual": learner.perceptual_name, "gan": resolved["train"]["disc_start"] == 0})
    return out


def eval_rows(device: torch.device, n: int, resolution: int, reps: int) -> list[dict]:
    from bench.metrics import image_quality

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
        from bench.metrics import lpips as lp

        net = lp.get_network("alex", device)
        found[net.name] = lambda: lp.distances(a, b, net=net)
    except Exception as exc:  # noqa: BLE001 - report, do not fail the benchmark
        print(f"(LPIPS throughput not measured: {exc})", file=sys.stderr)
    try:
        from bench.metrics import fid

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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.speed", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a subset that runs in under a minute on 2 CPU cores")
    p.add_argument("--methods", default=None, help="comma-separated methods (default: every registered one)")
    p.add_argument("--csv", type=Path, default=Path("results/speed.csv"), help="where to write the quantizer rows")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--no-stress", action="store_true", help="skip the 65,536 x 65,536 search shape")
    p.add_argument("--no-train-step", action="store_true", help="skip the full training-step timing")
    args = p.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    names = args.methods.split(",") if args.methods else methods.available()
    reps = 3 if args.quick else 5
    shapes = list(QUICK_SHAPES if args.quick else FULL_SHAPES)
    if not args.quick and not args.no_stress:
        shapes.append(STRESS_SHAPE)
    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} CPU threads'}), torch {torch.__version__}")
    rows = quantizer_rows(names, shapes, device, reps)
    print("\nquantizer forward+backward (ms, median of %d); lower bound = distance matmul alone" % reps)
    print(_fmt(rows))
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.csv.with_name(args.csv.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(args.csv)
    if not args.no_train_step:
        presets = ["cpu-tiny"] if args.quick else ["cpu-tiny", "paper"]
        batch = None if device.type == "cuda" else (None if args.quick else 2)
        print("\nfull training step (vqgan, K=1024; paper on the CPU at batch 2)")
        print(_fmt(train_step_rows(presets, "vqgan", device, batch, reps=2 if not args.quick else 3)))
    print("\nevaluation throughput")
    print(_fmt(eval_rows(device, n=16 if args.quick else 64, resolution=32, reps=reps)))
    print(f"\nwrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
