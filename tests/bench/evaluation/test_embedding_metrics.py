"""FD-DINOv2 and CMMD with tiny randomly initialised DINOv2 / CLIP vision models saved to a folder
(the real ones are ViT-L: the formulas and the plumbing are what is tested here): each metric equals a
direct numpy computation of its formula on the same features, the features stream batch by batch
(the same values for any batch size, only feature rows kept), the preprocessing is dgm-eval's, and
without weights the metric is None with one line saying where to get them."""
from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg
import torch

from bench.core.errors import UserError
from bench.evaluation.metrics import embedding_metrics as em
from bench.evaluation.metrics import metric_weights
from bench.evaluation.metrics.registry import Batch, EvalContext
from tests.bench.evaluation.metric_images import blur, tiles


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection, Dinov2Config, Dinov2Model

    base = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                             patch_size=14, image_size=28)).save_pretrained(base / "dinov2")
    CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                   num_attention_heads=2, image_size=28, patch_size=14,
                                                   projection_dim=16)).save_pretrained(base / "clip")
    return base


@pytest.fixture
def configured(weights, monkeypatch):
    monkeypatch.setenv(metric_weights.METRIC_WEIGHTS_ENV, "")  # so the weights set below are undone after
    metric_weights.use(f"dinov2={weights / 'dinov2'},clip={weights / 'clip'}")
    yield weights
    em._NETWORKS.clear()


def _stream(acc_cls, originals, recons, batch):
    ctx = EvalContext(torch.device("cpu"), batch, len(originals), tuple(originals.shape[-2:]))
    acc = acc_cls(ctx)
    for i in range(0, len(originals), batch):
        acc.update(Batch(originals[i : i + batch], recons[i : i + batch]))
    return acc


def _images():
    x = tiles(7, offset=1)
    return x, blur(x, 1.5)


def test_fd_dinov2_is_the_frechet_distance_of_the_features(configured):
    x, y = _images()
    acc = _stream(em.FdDinov2, x, y, batch=3)
    # only feature rows are held, batch by batch: (batch, d) float32, never the images
    assert [c.shape for c in acc._orig] == [(3, 32), (3, 32), (1, 32)] and all(c.dtype == np.float32 for c in acc._orig)
    acc_rows = list(acc._orig)
    metrics, proto = acc.finish()
    whole = _stream(em.FdDinov2, x, y, batch=7)  # one batch: the same features whatever the batch size
    fo, fr = whole._orig[0].astype(np.float64), whole._recon[0].astype(np.float64)
    assert np.allclose(np.concatenate(acc_rows), fo, atol=1e-5)
    # the textbook formula with scipy's matrix square root (pytorch-fid's), on the same features
    s1, s2 = np.cov(fo, rowvar=False), np.cov(fr, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected = ((fo.mean(0) - fr.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
    assert metrics[em.FD_DINOV2] == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert metrics[em.FD_DINOV2] > 0
    entry = proto[em.FD_DINOV2]
    assert entry["n_images"] == 7 and entry["features"] == 32 and "dgm-eval" in entry["preprocessing"]


def test_cmmd_is_the_scaled_gaussian_mmd_of_normalised_clip_embeddings(configured):
    x, y = _images()
    metrics, proto = _stream(em.Cmmd, x, y, batch=2).finish()
    net = em.network("clip", torch.device("cpu"))
    a, b = net.features(x).astype(np.float64), net.features(y).astype(np.float64)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)

    def k(u, v):  # pair by pair, exp(-||u - v||^2 / (2 * 10^2))
        return np.mean([[np.exp(-np.sum((p - q) ** 2) / 200.0) for q in v] for p in u])
    expected = 1000.0 * (k(a, a) + k(b, b) - 2 * k(a, b))
    assert metrics[em.CMMD] == pytest.approx(expected, rel=1e-4, abs=1e-9)
    assert em.cmmd(a, a) == pytest.approx(0.0, abs=1e-9)
    assert proto[em.CMMD]["n_images"] == 7 and "sigma 10" in proto[em.CMMD]["distance"]


def test_dinov2_preprocessing_is_dgm_evals():
    from PIL import Image
    from torchvision import transforms as T

    x = tiles(2, offset=5)
    reference = torch.stack([T.Compose([T.Resize((224, 224), T.InterpolationMode.BICUBIC), T.ToTensor(),
                                        T.Normalize(em.IMAGENET_MEAN, em.IMAGENET_STD)])(
        Image.fromarray(im.permute(1, 2, 0).numpy())) for im in x])
    assert torch.allclose(em.dinov2_inputs(x), reference, atol=1e-6)
    clip = em.clip_inputs(x, 28)
    assert clip.shape == (2, 3, 28, 28)


def test_without_weights_the_metric_is_none_with_where_to_get_them(monkeypatch):
    monkeypatch.setenv(metric_weights.METRIC_WEIGHTS_ENV, "")  # so the weights set below are undone after
    x, y = _images()
    for cls, key, source in ((em.FdDinov2, em.FD_DINOV2, "facebook/dinov2-large"),
                             (em.Cmmd, em.CMMD, "openai/clip-vit-large-patch14-336")):
        metrics, proto = _stream(cls, x, y, batch=4).finish()
        assert metrics == {key: None}
        why = proto[key]["skipped"]
        assert "\n" not in why and source in why and "--metric-weights" in why
    from bench.cli.list import metric_lines

    text = "\n".join(metric_lines())
    assert "fd_dinov2" in text and "cmmd" in text and text.count("unavailable") == 2


def test_metric_weights_flag_is_checked_before_any_work(tmp_path, weights):
    with pytest.raises(UserError, match="unknown network 'vgg'"):
        metric_weights.parse(f"vgg={weights / 'dinov2'}")
    with pytest.raises(UserError, match="no config.json"):
        metric_weights.parse(f"dinov2={tmp_path}")
    with pytest.raises(UserError, match="NAME=PATH"):
        metric_weights.parse("dinov2")
    assert metric_weights.parse(f"clip={weights / 'clip'}") == {"clip": (weights / "clip").resolve()}


def test_run_bench_refuses_a_bad_weights_folder_with_exit_2(tmp_path, capsys):
    from bench.cli.main import main

    assert main(["--metric-weights", f"dinov2={tmp_path}", "--out", str(tmp_path / "out"), "--no-ray"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no config.json" in err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # the whole folder CLI: Inception, LPIPS and both networks (~2 min on 2 loaded cores)
def test_metrics_cli_gives_both_metrics_with_weights(configured, tmp_path, capsys):
    from bench.cli.metrics import main
    from tests.bench.evaluation.metric_images import write_folder

    x, y = _images()
    write_folder(x, tmp_path / "a")
    write_folder(y, tmp_path / "b")
    arg = f"dinov2={configured / 'dinov2'},clip={configured / 'clip'}"
    assert main([str(tmp_path / "a"), str(tmp_path / "b"), "--metric-weights", arg]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["metrics"][em.FD_DINOV2] > 0 and result["metrics"][em.CMMD] > 0
    assert result["protocol"][em.CMMD]["weights"] == str((configured / "clip").resolve())
