"""Peak memory of the streaming evaluator against the number of images:
`python -m bench.speed.eval_memory` evaluates a tiny randomly initialised autoencoder on 500 and on
5,000 generated 128 px images, each in a fresh subprocess with an empty FID reference cache (so the
originals' features are computed too: the larger case), and prints each process's RSS high-water
mark and their ratio. Streaming keeps only the per-image values and the Inception features, so the
ratio should stay near 1 (target < 1.3).

The images are generated from their index on demand (no dataset held in memory: the measurement is
of the evaluator, not of an in-memory split). `--stand-in-features` replaces Inception-v3 by a cheap
network with the same 2048-d output: the features accumulate exactly as with Inception, at a
fraction of the time (Inception costs about 1 s per image per CPU core); the ratio it gives is an
upper bound, since Inception's weights and activations only add to the constant part.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class GeneratedImages:
    """n deterministic smooth uint8 (3, R, R) images, made from their index when asked for."""

    def __init__(self, n: int, resolution: int) -> None:
        from datasets.base import ImageDataset

        self.__class__ = type("GeneratedImages", (GeneratedImages, ImageDataset), {})
        self.n, self.resolution = n, resolution
        self.names = [f"gen_{i:06d}" for i in range(n)]
        self.protocol = {"dataset": "eval-memory", "split": "val", "resolution": resolution,
                         "preprocessing": "generated from the index"}

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(int(i))
        low = torch.rand(1, 3, 8, 8, generator=g)
        img = torch.nn.functional.interpolate(low, size=(self.resolution,) * 2, mode="bilinear", align_corners=False)
        return (img[0] * 255).round().to(torch.uint8)


class _StandInFeatures(torch.nn.Module):
    """2048 features per image from a strided convolution: same output as Inception, little compute."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 2048, 8, stride=8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.conv(x.float() / 128 - 1).mean(dim=(2, 3)),)


def child(n: int, resolution: int, batch_size: int, stand_in: bool, perceptual: bool) -> dict[str, Any]:
    """One evaluation in this (fresh) process; its memory figures in KiB."""
    import methods
    from bench.evaluation import evaluator
    from bench.evaluation.metrics import fid, fid_weights
    from bench.models.autoencoder import VQAutoencoder

    torch.set_num_threads(max(1, int(os.environ.get("EVAL_MEMORY_THREADS", "1"))))
    torch.manual_seed(0)
    model = VQAutoencoder(methods.create("vqgan", 256, 8), ch=16, ch_mult=(1, 1, 2, 2), num_res_blocks=1,
                          attn_resolutions=(), resolution=resolution, z_channels=8).eval()
    if stand_in:
        weights = fid_weights.InceptionWeights(Path("stand-in"), "stand-in", {})
        fake = fid.Extractor(_StandInFeatures().eval(), weights, torch.device("cpu"))
        fid.get_extractor = lambda device="cpu": fake  # this process only
    data = GeneratedImages(n, resolution)
    before = _rss_kb("VmRSS")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        metrics, protocol = evaluator.evaluate(model, data, Path(run_dir), torch.device("cpu"), batch_size,
                                               perceptual=perceptual)
        files = {p.name: p.stat().st_size for p in Path(run_dir).iterdir()}
    return {"n_images": n, "resolution": resolution, "batch_size": batch_size, "stand_in_features": stand_in,
            "perceptual": perceptual, "torch_threads": torch.get_num_threads(), "eval_s": time.perf_counter() - t0,
            "rss_before_kib": before, "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "fid": metrics.get("fid"), "files": files,
            "reference_cached": (protocol.get("fid") or {}).get("reference_cached")}


def measure(n: int, args: argparse.Namespace) -> dict[str, Any]:
    """Runs `child` in a fresh interpreter with an empty cache and returns its JSON line."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "VQBENCH_CACHE": cache}
        if args.stand_in_features:
            env["VQBENCH_CACHE"] = cache  # nothing of the real weights is needed
        else:  # the FID weights are derived once per cache root: reuse the user's
            env["VQBENCH_FID_REFERENCE_ONLY_CACHE"] = "1"
        cmd = [sys.executable, "-m", "bench.speed.eval_memory", "--child", str(n), "--resolution", str(args.resolution),
               "--batch-size", str(args.batch_size)]
        cmd += ["--stand-in-features"] if args.stand_in_features else []
        cmd += ["--no-perceptual"] if args.no_perceptual else []
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"child for {n} images failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.speed.eval_memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="500,5000", help="image counts, comma-separated (default 500,5000)")
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--stand-in-features", action="store_true", help="a cheap 2048-d network instead of Inception")
    p.add_argument("--no-perceptual", action="store_true", help="PSNR, SSIM and code usage only")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.resolution, args.batch_size, args.stand_in_features,
                               not args.no_perceptual)))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for n in sizes:
        row = measure(n, args)
        rows.append(row)
        print(f"{n:>6} images at {args.resolution} px: peak RSS {row['peak_rss_kib'] / 1024:7.1f} MiB "
              f"(before evaluating {row['rss_before_kib'] / 1024:6.1f} MiB), {row['eval_s']:.0f} s", flush=True)
    if len(rows) >= 2:
        ratio = rows[-1]["peak_rss_kib"] / rows[0]["peak_rss_kib"]
        print(f"peak RSS ratio {sizes[-1]} / {sizes[0]} images: {ratio:.3f} (target < 1.3)")
    print(json.dumps({"rows": rows, "cpu": _cpu(), "load_avg_1min": os.getloadavg()[0]}))
    return 0


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    except OSError:
        name = "?"
    return f"{name}, {os.cpu_count()} CPUs"


if __name__ == "__main__":
    raise SystemExit(main())
