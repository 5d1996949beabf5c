"""Evaluation runs in float32 with TF32 off on every device (bench.evaluation.precision): whatever
autocast and precision flags the caller has on, the evaluator (reconstruction, PSNR/SSIM, Inception,
LPIPS) and the tokenizer's encoder give the same numbers, the caller's settings come back afterwards,
the record says how it was computed, and nothing touches CUDA on a CPU run."""
import math

import pytest
import torch

import methods
from bench.evaluation import precision
from bench.evaluation.evaluator import evaluate
from bench.evaluation.metrics import fid, keys
from bench.evaluation.stream import evaluate_images
from bench.generation import tokens
from bench.models.autoencoder import VQAutoencoder
from datasets.tensor_dataset import UInt8Images

from .metric_images import blur, tiles

NEW_API = bool(precision._precision_leaves())


@pytest.fixture(autouse=True)
def caller_flags():
    """Every test leaves the process's precision flags as it found them."""
    saved = precision.current_flags()
    yield
    precision.restore_flags(saved)


def _reduced_precision_caller() -> None:
    """What a training script might have set: TF32 everywhere, bf16 matmuls in oneDNN where it can."""
    if NEW_API:
        for leaf in precision._precision_leaves():
            leaf.fp32_precision = "tf32"
        torch.backends.mkldnn.matmul.fp32_precision = "bf16"
    else:
        torch.set_float32_matmul_precision("medium")
        torch.backends.cudnn.allow_tf32 = True


def _full_precision_now() -> bool:
    if NEW_API:
        return all(leaf.fp32_precision == "ieee" for leaf in precision._precision_leaves())
    return torch.get_float32_matmul_precision() == "highest" and not torch.backends.cudnn.allow_tf32


def _leaf_values() -> list:
    return [leaf.fp32_precision for leaf in precision._precision_leaves()]


def test_the_block_is_float32_and_the_caller_gets_its_settings_back():
    _reduced_precision_caller()
    before = precision.current_flags()
    assert not _full_precision_now()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with precision.evaluation_precision("cpu"):
            assert not torch.is_autocast_enabled("cpu") and not torch.is_autocast_enabled("cuda")
            assert _full_precision_now()
            x = torch.randn(4, 8)
            assert (x @ x.T).dtype == torch.float32
            with precision.evaluation_precision("cpu"):  # nested: the outer block stays float32
                pass
            assert _full_precision_now()
        assert torch.is_autocast_enabled("cpu")
        assert (x @ x.T).dtype == torch.bfloat16
    assert precision.current_flags() == before


def test_settings_come_back_after_an_error():
    _reduced_precision_caller()
    before = precision.current_flags()
    with pytest.raises(RuntimeError, match="boom"):
        with precision.evaluation_precision("cpu"):
            raise RuntimeError("boom")
    assert precision.current_flags() == before


def test_the_legacy_flags_on_a_torch_without_the_new_api(monkeypatch):
    if NEW_API:  # the legacy getters refuse a mixed state: start from torch's defaults
        for leaf in precision._precision_leaves():
            leaf.fp32_precision = "none"
    monkeypatch.setattr(precision, "_precision_leaves", lambda: ())
    torch.set_float32_matmul_precision("high")
    torch.backends.cudnn.allow_tf32 = True
    with precision.evaluation_precision("cpu"):
        assert torch.get_float32_matmul_precision() == "highest"
        assert not torch.backends.cudnn.allow_tf32
    assert torch.get_float32_matmul_precision() == "high" and torch.backends.cudnn.allow_tf32


def test_no_cuda_call(monkeypatch):
    """Only backend flags: with every CUDA entry point failing, the block and a convolution inside it run."""
    def refuse(*args, **kwargs):
        raise AssertionError("CUDA touched on a CPU evaluation")

    for name in ("_lazy_init", "init", "is_available", "device_count", "current_device", "set_device",
                 "synchronize", "get_rng_state", "is_bf16_supported", "get_device_capability", "mem_get_info"):
        monkeypatch.setattr(torch.cuda, name, refuse)
    monkeypatch.setattr(torch._C, "_cuda_init", refuse, raising=False)
    with precision.evaluation_precision("cpu"):
        torch.nn.functional.conv2d(torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3))
    assert not torch.cuda.is_initialized()


def test_cache_tag_names_device_and_precision():
    assert precision.cache_tag("cuda") == "cuda-fp32" and precision.cache_tag("cpu") == "cpu-fp32"


# --- the evaluator ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def extractor():
    return fid.get_extractor()  # loaded (or derived) once, before any test moves the cache


def _model(method: str = "vqgan") -> VQAutoencoder:
    torch.manual_seed(0)
    q = methods.create(method, 16, 8)
    return VQAutoencoder(q, ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), resolution=32,
                         z_channels=8).eval()


class _Spy:
    """Records, at every forward of the model, whether autocast was on and the flags full precision."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.seen: list[tuple[bool, bool]] = []
        model.register_forward_hook(lambda *_: self.seen.append((torch.is_autocast_enabled("cpu"),
                                                                 _full_precision_now())))


def _evaluate_twice(tmp_path, perceptual: bool):
    """(metrics, protocol) of one model and split evaluated plainly, then under a bf16-autocast caller
    with TF32 on; checks that the model ran in float32 and that the caller's flags came back."""
    data = UInt8Images(tiles(4), [f"t{i}" for i in range(4)], {"dataset": "photos-test", "split": "val",
                                                                 "resolution": 32})
    for d in ("plain", "autocast"):
        (tmp_path / d).mkdir()
    model = _model()
    plain = evaluate(model, data, tmp_path / "plain", torch.device("cpu"), batch_size=2, perceptual=perceptual)
    spy = _Spy(model)
    _reduced_precision_caller()
    caller = precision.current_flags()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = evaluate(model, data, tmp_path / "autocast", torch.device("cpu"), batch_size=2, perceptual=perceptual)
        assert torch.is_autocast_enabled("cpu")
    assert precision.current_flags() == caller  # TF32 and oneDNN flags restored
    assert spy.seen == [(False, True), (False, True)]  # both batches: no autocast, full float32
    return plain, under


def test_evaluation_under_an_autocast_caller_gives_the_same_metrics(tmp_path):
    (plain_metrics, plain_protocol), (metrics, protocol) = _evaluate_twice(tmp_path, perceptual=False)
    assert metrics[keys.PSNR] is not None and metrics[keys.UTILIZATION] is not None
    assert metrics == plain_metrics  # exactly
    assert protocol["evaluation_precision"] == plain_protocol["evaluation_precision"] == precision.DESCRIPTION


@pytest.mark.slow  # Inception and LPIPS on 2 CPU cores: about 2 minutes under load
def test_perceptual_metrics_under_an_autocast_caller_are_the_same(tmp_path, monkeypatch, extractor):
    monkeypatch.setenv("VQBENCH_CACHE", str(tmp_path / "cache"))
    (plain_metrics, _), (metrics, protocol) = _evaluate_twice(tmp_path, perceptual=True)
    assert metrics[keys.FID] is not None and math.isfinite(metrics[keys.FID])
    assert metrics == plain_metrics  # exactly: PSNR, SSIM, rFID, KID, LPIPS, usage
    assert protocol["fid"]["reference_cached"] and protocol["fid"]["device"] == "cpu"


class _SmallFeatures(torch.nn.Module):
    """A stand-in for Inception: a convolution on the uint8 images, whose result bf16 would change."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 16, 3)
        self.autocast_seen: list[bool] = []

    def forward(self, x):
        self.autocast_seen.append(torch.is_autocast_enabled("cpu"))
        return (self.conv(x.float() / 255).mean(dim=(2, 3)),)


def test_inception_features_ignore_an_autocast_caller(tmp_path):
    from bench.evaluation.metrics import fid_weights

    ext = fid.Extractor(_SmallFeatures(), fid_weights.InceptionWeights(tmp_path / "none.pth", "fake", {}),
                        torch.device("cpu"))
    x = tiles(4)
    plain = fid.batch_features(x, ext)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = fid.batch_features(x, ext)
        reduced = ext.model(x)[0].detach().float().numpy()  # what the caller's autocast alone gives
    assert ext.model.autocast_seen == [False, False, True]
    assert (under == plain).all()
    assert not (reduced == plain).all()  # so the comparison above can fail


def test_the_metrics_cli_path_records_the_precision_and_ignores_autocast():
    x = tiles(4)
    y = blur(x, 1.0)
    plain = evaluate_images(x, y, perceptual=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = evaluate_images(x, y, perceptual=False)
    assert under.metrics == plain.metrics
    assert under.protocol["evaluation_precision"] == precision.DESCRIPTION


def test_token_extraction_is_float32_under_an_autocast_caller():
    model = _model()
    data = UInt8Images(tiles(4), [f"t{i}" for i in range(4)], {"dataset": "photos-test"})
    plain = tokens.encode(model, data, torch.device("cpu"))
    seen = []
    model.encoder.register_forward_hook(lambda *_: seen.append(torch.is_autocast_enabled("cpu")))
    _reduced_precision_caller()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = tokens.encode(model, data, torch.device("cpu"))
    assert seen == [False]
    assert torch.equal(under, plain)


def test_sampling_precision_is_recorded_per_device():
    from bench.generation.sampling import sampling_precision

    assert sampling_precision(torch.device("cpu")) == "float32"
    assert sampling_precision(torch.device("cuda")).startswith("bf16 autocast")
