"""`python -m bench.metrics ORIG_DIR RECON_DIR`: the protocol's image metrics (every registered
metric that reads images: PSNR, SSIM, LPIPS or ST-LPIPS, rFID, rFID-infinity, KID) for two folders of images with
the same file names, without training. They are computed by the evaluator's own stream
(bench.evaluation.stream), so they equal a run's numbers on the same images.

Images are read with PIL, converted to RGB uint8 (as torch-fidelity reads folders) and must all have
one size. Human-readable lines go first, each metric with its 95% bootstrap interval over the images
(the tables' resamples, bench.reporting.intervals); the last line is one JSON object {"metrics",
"protocol", "intervals"}.
`--fid-reference stats:PATH` compares RECON_DIR with precomputed statistics (pytorch-fid's or ADM's .npz)
instead of ORIG_DIR (bench.evaluation.metrics.fid_reference_choice).
`python -m bench.metrics --clear-cache [DATASET]` removes cached FID reference statistics;
`python -m bench.metrics --throughput N` times the feature extractors on this machine.
Bad input prints one line and exits with code 2.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

if TYPE_CHECKING:
    from bench.evaluation.stream import Evaluation

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


class InputError(Exception):
    pass


def image_names(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder")
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def load_folder(folder: Path, names: Sequence[str]) -> torch.Tensor:
    """uint8 (N, 3, H, W) of the named images, in that order."""
    arrays, size = [], None
    for name in names:
        with Image.open(folder / name) as im:
            a = np.asarray(im.convert("RGB"))
        if size is None:
            size = a.shape
        elif a.shape != size:
            raise InputError(f"{folder / name} is {a.shape[1]}x{a.shape[0]}, the others {size[1]}x{size[0]}: "
                             "all images must have one size")
        arrays.append(a)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def paired_names(orig_dir: Path, recon_dir: Path) -> list[str]:
    a, b = image_names(orig_dir), image_names(recon_dir)
    if not a:
        raise InputError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {orig_dir}")
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if only_a or only_b:
        raise InputError(f"the folders must hold the same file names: only in {orig_dir}: {only_a[:5]}"
                         f"{'...' if len(only_a) > 5 else ''}; only in {recon_dir}: {only_b[:5]}"
                         f"{'...' if len(only_b) > 5 else ''}")
    return a


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # inf PSNR of identical images: JSON has no infinity
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.metrics", description=__doc__.split("\n\n")[0])
    p.add_argument("orig_dir", nargs="?", type=Path, help="folder of original images")
    p.add_argument("recon_dir", nargs="?", type=Path, help="folder of reconstructions with the same file names")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64; results do "
                   "not depend on it)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--no-perceptual", action="store_true", help="no metric that needs a network (LPIPS, rFID, KID)")
    p.add_argument("--metric-weights", default=None, metavar="dinov2=PATH,clip=PATH",
                   help="local Hugging Face folders of DINOv2 ViT-L/14 (FD-DINOv2) and CLIP ViT-L/14@336 (CMMD); "
                        "without them those two metrics are unavailable")
    p.add_argument("--fid-reference", default="val", metavar="val|stats:PATH",
                   help="what rFID compares RECON_DIR with: val (default) the images of ORIG_DIR, paired by name; "
                        "stats:PATH precomputed Inception statistics, pytorch-fid's .npz (mu, sigma) or ADM's "
                        "reference batch (its pool3 mu and sigma); then KID is unavailable and rFID-infinity "
                        "subsamples the reconstructions only (docs/metrics.md)")
    p.add_argument("--clear-cache", nargs="?", const="", default=None, metavar="DATASET",
                   help="remove cached FID reference statistics (of DATASET, or all) and exit")
    p.add_argument("--throughput", type=int, default=None, metavar="N",
                   help="time Inception features and LPIPS on N tiles of the embedded photos dataset and exit")
    p.add_argument("--resolution", type=int, default=32, help="tile size for --throughput (default 32)")
    return p


def throughput(n: int, resolution: int, batch_size: int, device: str) -> dict:
    """Images per second of the FID features and of LPIPS on this machine (after a warm-up batch)."""
    import os
    import time

    import datasets
    from bench.evaluation.metrics import fid, lpips

    images = datasets.create("photos", "val", resolution).images
    images = images.repeat((n + len(images) - 1) // len(images), 1, 1, 1)[:n]
    other = images.flip(-1)
    ext = fid.get_extractor(device)
    net = lpips.get_network("alex", device)
    fid.inception_features(images[:2], extractor=ext)
    lpips.distances(images[:2], other[:2], net=net)
    t0 = time.perf_counter()
    fid.inception_features(images, batch_size, extractor=ext)
    t1 = time.perf_counter()
    lpips.distances(images, other, batch_size, net=net)
    t2 = time.perf_counter()
    return {"n_images": n, "resolution": resolution, "batch_size": batch_size, "device": device,
            "torch_threads": torch.get_num_threads(), "load_avg_1min": os.getloadavg()[0],
            "inception_images_per_s": n / (t1 - t0), "lpips_name": net.name, "lpips_images_per_s": n / (t2 - t1)}


def intervals(result: Evaluation) -> dict[str, dict[str, Any]]:
    """95% bootstrap intervals over the images, by metric key, as the tables compute them
    (bench.reporting.intervals: the same fixed resamples): per-image metrics from result.per_image,
    rFID and KID from the Inception features of both sets (result.arrays, absent with --no-perceptual).
    rFID-infinity from the first fid_infinity_interval.RESAMPLES of the same resamples, each refitted.
    A metric whose value is not finite (PSNR of identical images) or that cannot be resampled has none."""
    from bench.evaluation.metrics import fid_stream, keys
    from bench.reporting import feature_bootstrap, fid_infinity_interval
    from bench.reporting import intervals as ci

    found: dict[str, ci.Interval] = {}
    resamples: dict[str, int] = {}
    for key, values in result.per_image.items():
        value = result.metrics.get(key)
        if value is None or not math.isfinite(value) or not np.isfinite(values).all():
            continue
        idx = ci.resample_indices(len(values), ci.IMAGE_RESAMPLES)
        if (got := ci.bootstrap_interval(float(value), ci.mean_replicates(values, idx), len(values))) is not None:
            found[key], resamples[key] = got, ci.IMAGE_RESAMPLES
    recons = result.arrays.get(fid_stream.FEATURES_RECONS)
    originals = result.arrays.get(fid_stream.FEATURES_ORIGINALS)
    if recons is not None and originals is not None:
        reps = feature_bootstrap.replicates(recons, originals)
        for key in (keys.FID, keys.KID):
            value = result.metrics.get(key)
            if reps is not None and value is not None and math.isfinite(value):
                if (got := ci.bootstrap_interval(float(value), reps[key], len(recons))) is not None:
                    found[key], resamples[key] = got, ci.FEATURE_RESAMPLES
        value = result.metrics.get(keys.FID_INF)
        if value is not None and math.isfinite(value):
            inf_reps = fid_infinity_interval.paired_replicates(recons, originals)
            if (got := fid_infinity_interval.interval(float(value), inf_reps, len(recons))) is not None:
                found[keys.FID_INF], resamples[keys.FID_INF] = got, fid_infinity_interval.RESAMPLES
    return {k: {"low": iv.low, "high": iv.high, "level": ci.LEVEL, "kind": "bootstrap over images",
                "n_images": iv.n, "resamples": resamples[k]} for k, iv in found.items()}


def interval_text(entry: dict[str, Any] | None) -> str:
    """What follows a metric's value on its line: its 95% interval, or nothing."""
    if not entry:
        return ""
    return f"  [{entry['low']:.6g}, {entry['high']:.6g}]"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from bench.core.errors import UserError
    from bench.evaluation.metrics import fid, fid_infinity, fid_reference, fid_reference_choice, metric_weights

    if args.clear_cache is not None:
        n = fid_reference.clear_cache(args.clear_cache or None)
        print(json.dumps({"removed": n}))
        return 0
    if args.throughput is not None:
        print(json.dumps(throughput(args.throughput, args.resolution, args.batch_size, args.device)))
        return 0
    try:
        if args.orig_dir is None or args.recon_dir is None:
            raise InputError("give ORIG_DIR and RECON_DIR (or --clear-cache)")
        try:
            metric_weights.use(args.metric_weights)
        except UserError as exc:
            raise InputError(str(exc)) from None
        if args.batch_size < 1:
            raise InputError(f"--batch-size must be positive, got {args.batch_size}")
        try:
            reference = fid_reference_choice.parse(args.fid_reference)
        except UserError as exc:
            raise InputError(str(exc)) from None
        if reference.kind == fid_reference_choice.TRAIN:
            raise InputError(f"--fid-reference {args.fid_reference}: two folders have no training split; give val, "
                             "or stats:PATH (e.g. `python -m pytorch_fid --save-stats TRAIN_DIR train.npz`)")
        names = paired_names(args.orig_dir, args.recon_dir)
        originals = load_folder(args.orig_dir, names)
        recons = load_folder(args.recon_dir, names)
        if originals.shape != recons.shape:
            raise InputError(f"originals are {tuple(originals.shape[-2:])} px, reconstructions "
                             f"{tuple(recons.shape[-2:])} px")
    except (InputError, OSError) as exc:
        print(f"python -m bench.metrics: error: {exc}", file=sys.stderr)
        return 2
    from bench.evaluation.stream import evaluate_images

    fixed = None if args.no_perceptual else fid_reference.fixed_reference(reference)
    result = evaluate_images(originals, recons, None, args.batch_size, args.device,
                             perceptual=not args.no_perceptual, use_cache=False, fixed_reference=fixed)
    protocol = {"n_images": len(names), "resolution": list(originals.shape[-2:]), "orig_dir": str(args.orig_dir),
                "recon_dir": str(args.recon_dir), **result.protocol}
    found = intervals(result)
    for key, value in result.metrics.items():
        if value is not None:
            print(f"{key:>10}: {value:.6g}{interval_text(found.get(key))}")
    if found:
        counts = ", ".join(f"{k} {v['resamples']}" for k, v in found.items())
        print(f"[low, high]: 95% bootstrap interval over the {len(names)} images, each original resampled with "
              f"its reconstruction (resamples: {counts}): how precisely these reconstructions were measured "
              f"on these images")
    if isinstance(ref := (protocol.get("fid") or {}).get("reference"), str):
        print(f"rFID reference: {ref}" + ("" if ref == fid_reference_choice.VAL else
                                          " (fixed statistics: no interval for rFID, KID unavailable without the "
                                          "reference's features)" if fixed is not None and fixed.features is None
                                          else " (fixed statistics: no paired interval for rFID)"))
    for key in ("fd_dinov2", "cmmd"):
        if (why := (protocol.get(key) or {}).get("skipped")) and not args.no_perceptual:
            print(f"note: {why}")
    if protocol.get("fid", {}).get("rank_deficient"):
        print(f"note: FID from {len(names)} images (< {fid.MIN_FULL_RANK}): rank-deficient covariance, "
              "not comparable with FIDs from more images; fid_inf extrapolates FID to infinitely many images "
              "(Chong & Forsyth 2020) and is the number to compare across image counts, though with fewer than "
              f"{fid_infinity.images_for_smallest(fid.FEATURE_DIM):,} images it removes only part of the bias "
              "(docs/metrics.md, FID-infinity)")
    out: dict[str, Any] = {"metrics": result.metrics, "protocol": protocol}
    out["intervals"] = found
    print(json.dumps(_json_safe(out), sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
