"""FD-DINOv2 (Stein et al., NeurIPS 2023, dgm-eval) and CMMD (Jayasumana et al., CVPR 2024) as set
metrics: reconstructions against their originals, from features streamed batch by batch like
Inception's (only the feature rows are kept, never the images).

- FD-DINOv2 (`fd_dinov2`): the Frechet distance (fid.frechet_distance, the rFID formula) of DINOv2
  ViT-L/14 features: the final-norm CLS token (transformers Dinov2Model's `pooler_output`, which is
  what torch.hub's dinov2 model returns in dgm-eval). Preprocessing as dgm-eval's default
  (dgm_eval/models/dinov2.py, commit d57a6d2: torchvision Resize((224, 224), BICUBIC) of the PIL image,
  ToTensor, ImageNet mean/std): each uint8 image resized to 224 x 224 by PIL's bicubic filter
  (antialiased when shrinking), scaled to [0, 1], normalised.
- CMMD (`cmmd`): MMD^2 with the Gaussian kernel exp(-||x - y||^2 / (2 sigma^2)), sigma = 10, over
  L2-normalised CLIP ViT-L/14@336 image embeddings (CLIPVisionModelWithProjection's `image_embeds`),
  the V-statistic (means over all pairs, diagonal included) scaled by 1000, as the CMMD paper's code
  (google-research cmmd/distance.py). Preprocessing as its cmmd/embedding.py: images in [0, 1] resized
  bicubically to the model's input size (336) without rounding (here PIL's float bicubic per channel,
  the Keys a = -0.5 kernel with antialiasing that jax.image.resize uses), then CLIP's mean/std.

Weights come from local folders only (metric_weights). Without them the metric is None and its
protocol entry says where to get them (one line); nothing else in the evaluation changes. The
networks load once per process, folder and device.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from bench.evaluation.metrics import fid, keys, metric_weights
from bench.evaluation.metrics.registry import LOWER, Batch, EvalContext, Metric, register_metric

FD_DINOV2, CMMD = keys.FD_DINOV2, keys.CMMD
DINOV2_SIZE = 224  # dgm-eval's input size
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
CMMD_SIGMA, CMMD_SCALE = 10.0, 1000.0


def _normalise(x: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """(B, H, W, 3) float in [0, 1] -> (B, 3, H, W) float32 normalised."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).permute(0, 3, 1, 2)
    return (t - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def dinov2_inputs(images: Tensor) -> Tensor:
    """dgm-eval's DINOv2 preprocessing of uint8 (B, 3, H, W) images."""
    out = [np.asarray(Image.fromarray(im.permute(1, 2, 0).numpy()).resize((DINOV2_SIZE, DINOV2_SIZE), Image.BICUBIC))
           for im in images]
    return _normalise(np.stack(out).astype(np.float32) / 255.0, IMAGENET_MEAN, IMAGENET_STD)


def clip_inputs(images: Tensor, size: int) -> Tensor:
    """CMMD's CLIP preprocessing of uint8 (B, 3, H, W) images: [0, 1], float bicubic to size x size."""
    def resize(im: np.ndarray) -> np.ndarray:
        return np.stack([np.asarray(Image.fromarray(im[..., c], mode="F").resize((size, size), Image.BICUBIC))
                         for c in range(3)], axis=-1)
    x = images.permute(0, 2, 3, 1).numpy().astype(np.float32) / 255.0
    return _normalise(np.stack([resize(im) for im in x]), CLIP_MEAN, CLIP_STD)


@dataclass
class Network:
    """A loaded feature network: `features(uint8 batch) -> (B, d) float32`."""

    name: str
    folder: Path
    features: Callable[[Tensor], np.ndarray]
    preprocessing: str


_NETWORKS: dict[tuple[str, str, str], Network] = {}


def _load_dinov2(folder: Path, device: torch.device) -> Network:
    from transformers import Dinov2Model

    model = Dinov2Model.from_pretrained(str(folder)).eval().to(device)

    @torch.no_grad()
    def features(images: Tensor) -> np.ndarray:
        return model(pixel_values=dinov2_inputs(images).to(device)).pooler_output.float().cpu().numpy()
    return Network("dinov2", folder, features,
                   f"PIL bicubic to {DINOV2_SIZE}x{DINOV2_SIZE} from uint8, /255, ImageNet mean/std (dgm-eval)")


def _load_clip(folder: Path, device: torch.device) -> Network:
    from transformers import CLIPVisionModelWithProjection

    model = CLIPVisionModelWithProjection.from_pretrained(str(folder)).eval().to(device)
    size = int(model.config.image_size)

    @torch.no_grad()
    def features(images: Tensor) -> np.ndarray:
        emb = model(pixel_values=clip_inputs(images, size).to(device)).image_embeds.double()
        return (emb / torch.linalg.norm(emb, dim=-1, keepdim=True)).float().cpu().numpy()
    return Network("clip", folder, features,
                   f"/255, PIL float bicubic to {size}x{size}, CLIP mean/std; embeddings L2-normalised (CMMD)")


LOADERS = {"dinov2": _load_dinov2, "clip": _load_clip}


def network(name: str, device: torch.device) -> Network | None:
    """The configured network `name` on `device`, loaded once; None without weights."""
    folder = metric_weights.folder(name)
    if folder is None:
        return None
    key = (name, str(folder), str(device))
    if key not in _NETWORKS:
        _NETWORKS[key] = LOADERS[name](folder, device)
    return _NETWORKS[key]


def cmmd(x: np.ndarray, y: np.ndarray, sigma: float = CMMD_SIGMA, scale: float = CMMD_SCALE) -> float:
    """scale * (mean k(x, x') + mean k(y, y') - 2 mean k(x, y)), Gaussian kernel, all pairs (CMMD paper)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    gamma = 1.0 / (2.0 * sigma * sigma)

    def mean_kernel(a: np.ndarray, b: np.ndarray) -> float:
        sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
        return float(np.exp(-gamma * sq).mean())
    return scale * (mean_kernel(x, x) + mean_kernel(y, y) - 2.0 * mean_kernel(x, y))


class EmbeddingAccumulator:
    """Features of the originals and the reconstructions from one network, batch by batch."""

    network_name = ""
    key = ""

    def __init__(self, ctx: EvalContext) -> None:
        self.ctx = ctx
        self.net = network(self.network_name, ctx.device)
        self._orig: list[np.ndarray] = []
        self._recon: list[np.ndarray] = []
        self.seconds = 0.0

    def update(self, batch: Batch) -> None:
        if self.net is None:
            return
        t0 = time.perf_counter()
        self._orig.append(self.net.features(batch.originals))
        self._recon.append(self.net.features(batch.recons))
        self.seconds += time.perf_counter() - t0

    def distance(self, originals: np.ndarray, recons: np.ndarray) -> float:
        raise NotImplementedError

    def finish(self) -> tuple[dict[str, Any], dict[str, Any]]:
        if self.net is None:
            return {self.key: None}, {self.key: {"n_images": 0, "skipped": metric_weights.why_unavailable(
                self.network_name)}}
        o, r = np.concatenate(self._orig), np.concatenate(self._recon)
        self._orig, self._recon = [], []
        entry = {"n_images": len(o), "network": metric_weights.WEIGHTS[self.network_name].network,
                 "weights": str(self.net.folder), "features": o.shape[1], "preprocessing": self.net.preprocessing,
                 "features_s": self.seconds}
        return {self.key: self.distance(o, r)}, {self.key: {**entry, **self.describe()}}

    def describe(self) -> dict[str, Any]:
        return {}

    def files(self) -> dict[str, Any]:
        return {}

    def arrays(self) -> dict[str, Any]:
        return {}


class FdDinov2(EmbeddingAccumulator):
    network_name, key = "dinov2", FD_DINOV2

    def distance(self, originals: np.ndarray, recons: np.ndarray) -> float:
        return fid.frechet_distance(*fid.statistics(originals), *fid.statistics(recons))

    def describe(self) -> dict[str, Any]:
        return {"distance": "Frechet distance (the rFID formula) of the final-norm CLS token",
                "reference": "Stein et al., NeurIPS 2023 (dgm-eval)"}


class Cmmd(EmbeddingAccumulator):
    network_name, key = "clip", CMMD

    def distance(self, originals: np.ndarray, recons: np.ndarray) -> float:
        return cmmd(originals, recons)

    def describe(self) -> dict[str, Any]:
        return {"distance": f"MMD^2 (all pairs), Gaussian kernel sigma {CMMD_SIGMA:g}, x {CMMD_SCALE:g}",
                "reference": "Jayasumana et al., CVPR 2024 (google-research cmmd)"}


register_metric(Metric(FD_DINOV2, "FD-DINOv2", LOWER, 2, perceptual=True, accumulator=FdDinov2,
                       description="Frechet distance of DINOv2 ViT-L/14 features, reconstructions vs originals"))
register_metric(Metric(CMMD, "CMMD", LOWER, 3, perceptual=True, accumulator=Cmmd,
                       description="MMD of CLIP ViT-L/14@336 embeddings (Gaussian kernel, sigma 10, x1000)"))
