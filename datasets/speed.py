"""Images per second of a folder dataset with and without the decoded cache.

    python -m datasets.speed ffhq --path /data/ffhq --split train --resolution 256 --limit 500

Measures, in this process (single-threaded, no DataLoader workers): (1) decoding every image of the
split, (2) building the cache, (3) reading the split from the cache, for `--epochs` passes each, and
checks that cached and uncached tensors are identical. Prints one JSON line. The cache goes to
$VQBENCH_CACHE (default ~/.cache/vqbench); `--fresh-cache DIR` uses (and empties) DIR instead.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time

import torch


def _rate(ds, epochs: int) -> tuple[float, list[torch.Tensor]]:
    first: list[torch.Tensor] = []
    t0 = time.perf_counter()
    for e in range(epochs):
        for i in range(len(ds)):
            x = ds[(i, e)]
            if e == 0:
                first.append(x)
    return epochs * len(ds) / (time.perf_counter() - t0), first


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m datasets.speed", description=__doc__.split("\n\n")[0])
    ap.add_argument("name")
    ap.add_argument("--path", default=None)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--split", default="train", choices=("train", "val"))
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--limit", type=int, default=None, help="only the first N images (via limit_val on val)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--fresh-cache", default=None, metavar="DIR")
    args = ap.parse_args(argv)
    if args.fresh_cache:
        shutil.rmtree(args.fresh_cache, ignore_errors=True)
        os.environ["VQBENCH_CACHE"] = args.fresh_cache
    torch.set_num_threads(1)
    import datasets
    from datasets.cache import CachedImages, ImageFiles, cached

    options = {"path": args.path} if args.path else {}
    ds = datasets.create(args.name, args.split, args.resolution, args.data_root, **options)
    if args.limit and args.limit < len(ds):  # a subset that keeps names, paths and preprocessing
        ds = ImageFiles(ds.dataset, ds.split, ds.names[: args.limit], ds.paths[: args.limit], ds.prep, ds._protocol)
    plain_rate, plain = _rate(ds, args.epochs)
    t0 = time.perf_counter()
    c = cached(ds, args.path or ".", workers=0)
    build_s = time.perf_counter() - t0
    assert isinstance(c, CachedImages)
    cached_rate, from_cache = _rate(c, args.epochs)
    result = {
        "dataset": ds.dataset, "split": args.split, "resolution": args.resolution, "n_images": len(ds),
        "epochs": args.epochs, "uncached_images_per_s": round(plain_rate, 1),
        "cache_build_images_per_s": round(len(ds) / build_s, 1), "cached_images_per_s": round(cached_rate, 1),
        "speedup": round(cached_rate / plain_rate, 1), "cache_bytes": c.meta["bytes"],
        "identical": all(torch.equal(a, b) for a, b in zip(plain, from_cache)),
        "loadavg_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    from bench.core.errors import UserError

    try:
        main()
    except UserError as exc:
        raise SystemExit(f"datasets.speed: error: {exc}") from None
