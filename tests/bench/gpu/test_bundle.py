"""bench/gpu/bundle.py: the bundle's contents against the GPU image's package list, its MANIFEST, and the
repacked stlpips wheel. Building a real bundle needs the package registry and minutes (`make gpu-bundle`);
a bundle built here is checked too when it is present."""
import base64
import csv
import hashlib
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from bench.core.paths import REPO_ROOT
from bench.gpu import bundle, image


def _name(requirement: str) -> str:
    return image.normalize(requirement.split("==")[0])


def test_nothing_carried_is_on_the_image():
    listed = image.read_image()
    assert not [c.requirement for c in bundle.CARRIED if _name(c.requirement) in listed]


def test_every_project_requirement_the_image_lacks_is_carried_or_left_out_with_a_reason():
    listed = image.read_image()
    lacking = {r.name for r in image.project_requirements()} - set(listed)
    carried = {_name(c.requirement) for c in bundle.CARRIED}
    left_out = {name for item in bundle.LEFT_OUT for name in item.names}
    assert lacking == carried | left_out, (lacking - carried - left_out, (carried | left_out) - lacking)
    assert not carried & left_out
    assert all(item.why for item in bundle.LEFT_OUT)


def _fake_bundle(folder: Path, wheel_names: list[str]) -> Path:
    (folder / "wheels").mkdir(parents=True)
    why = {}
    for name in wheel_names:
        (folder / "wheels" / name).write_bytes(b"x" * 10)
        why[f"wheels/{name}"] = "a reason"
    bundle.write_manifest(folder, why, "3.12")
    return folder / bundle.MANIFEST


def test_a_right_manifest_passes_and_lists_every_file(tmp_path):
    names = ["torch_fidelity-0.4.0-py3-none-any.whl", "lpips-0.1.4-py3-none-any.whl",
             "stlpips_pytorch-0.0.2+alexhalf-py3-none-any.whl"]
    manifest = _fake_bundle(tmp_path, names)
    assert bundle.manifest_problems(manifest) == []
    rows = bundle.read_manifest(manifest)
    assert [(p, s) for p, s, _ in rows] == sorted((f"wheels/{n}", 10) for n in names)
    text = manifest.read_text()
    assert "# python 3.12" in text and "# 3 files, 30 bytes" in text and "# left out: ray:" in text


def test_a_manifest_carrying_an_image_package_or_missing_one_is_wrong(tmp_path):
    manifest = _fake_bundle(tmp_path, ["torch-2.11.0-cp312-cp312-manylinux_2_28_x86_64.whl",
                                       "lpips-0.1.4-py3-none-any.whl"])
    problems = bundle.manifest_problems(manifest)
    assert any("torch is on the GPU image already" in p for p in problems)
    assert "torch-fidelity==0.4.0 is not carried" in problems and "stlpips-pytorch==0.0.2 is not carried" in problems


def test_a_file_without_a_reason_stops_the_manifest(tmp_path):
    (tmp_path / "stray.bin").write_bytes(b"1")
    with pytest.raises(ValueError, match="stray.bin"):
        bundle.write_manifest(tmp_path, {}, "3.12")


@pytest.mark.skipif(not (REPO_ROOT / "gpu_bundle" / bundle.MANIFEST).is_file(), reason="no gpu_bundle/ built here")
def test_the_bundle_built_here_matches_the_image_and_its_manifest():
    folder = REPO_ROOT / "gpu_bundle"
    assert bundle.manifest_problems(folder / bundle.MANIFEST) == []
    for path, size, _ in bundle.read_manifest(folder / bundle.MANIFEST):
        assert (folder / path).stat().st_size == size, path


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _fake_stlpips_wheel(folder: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """A wheel laid out like stlpips-pytorch 0.0.2, with tiny weight files."""
    g = torch.Generator().manual_seed(0)
    alex = {"lin0.model.1.weight": torch.randn(1, 64, 1, 1, generator=g), "net.slice1.0.bias": torch.randn(64, generator=g)}
    files = {"stlpips_pytorch/__init__.py": b"", "stlpips_pytorch/stlpips.py": b"X = 1\n",
             "stlpips_pytorch/models_lpf/.DS_Store": b"junk"}
    for name, state in (("alex", alex), ("vgg", {"w": torch.ones(3)})):
        buffer = io.BytesIO()
        torch.save(state, buffer)
        files[f"stlpips_pytorch/weights/vST0.0/{name}_shift_tolerant.pth"] = buffer.getvalue()
    info = "stlpips_pytorch-0.0.2.dist-info"
    files[f"{info}/METADATA"] = b"Metadata-Version: 2.1\nName: stlpips_pytorch\nVersion: 0.0.2\nSummary: s\n"
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: x\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files[f"{info}/RECORD"] = b""
    path = folder / "stlpips_pytorch-0.0.2-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path, alex


def test_the_stlpips_repack_drops_vgg_halves_alex_and_installs(tmp_path):
    source, alex = _fake_stlpips_wheel(tmp_path)
    (tmp_path / "out").mkdir()
    wheel = bundle.repack_stlpips(source, tmp_path / "out")
    assert wheel.name == "stlpips_pytorch-0.0.2+alexhalf-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        info = "stlpips_pytorch-0.0.2+alexhalf.dist-info"
        assert not any("vgg" in n or ".DS_Store" in n for n in names)
        assert f"{info}/METADATA" in names and "\nVersion: 0.0.2+alexhalf\n" in z.read(f"{info}/METADATA").decode()
        for name, digest, size in csv.reader(io.StringIO(z.read(f"{info}/RECORD").decode())):
            if name != f"{info}/RECORD":
                assert digest == _record_hash(z.read(name)) and int(size) == len(z.read(name)), name
        halved = torch.load(io.BytesIO(z.read("stlpips_pytorch/weights/vST0.0/alex_shift_tolerant.pth")))
    for key, value in alex.items():
        assert halved[key].dtype == torch.float16 and torch.equal(halved[key], value.half())
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", str(target),
                    str(wheel)], check=True)
    assert (target / "stlpips_pytorch" / "stlpips.py").is_file()
    assert (target / "stlpips_pytorch-0.0.2+alexhalf.dist-info").is_dir()


def test_the_bundle_and_the_check_outputs_stay_out_of_git_and_ray_uploads():
    from bench.scheduling.backends.ray_session import WORKING_DIR_EXCLUDES

    paths = ["gpu_bundle/MANIFEST", "gpu_bundle-py3.11/MANIFEST", ".gpu_bundle.new/x", ".venv-gpu-check/installed",
             "gpu_check/20261206T000000Z/summary.md"]
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=REPO_ROOT, capture_output=True,
                             text=True, check=False).stdout.split()
    assert ignored == paths
    for pattern in ("gpu_bundle*", ".gpu_bundle*", "gpu_check", ".venv-gpu-check"):
        assert pattern in WORKING_DIR_EXCLUDES
