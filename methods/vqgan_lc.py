"""VQGAN-LC-style quantizer: a frozen codebook of pretrained features, mapped to the latent space by a
learned projector.

Scaling the Codebook Size of VQGAN to 100,000 with a Utilization Rate of 99% (Zhu, Wei, Lu, Chen,
NeurIPS 2024), https://arxiv.org/abs/2406.11837 (released code: github.com/zh460045050/VQGAN-LC).

The codebook C (K x F) is computed once from features of a frozen pretrained network and never
trained; the codes used are P(C), with P a learned linear projector F -> dim. Nearest code to P(C),
straight-through estimator, and the released loss ||z - sg[P(C)_k]||^2 + beta ||sg[z] - P(C)_k||^2
(beta = 0.33 on the codebook term). Every step's codebook gradient goes to P, so it moves all codes
at once and none is left unused (the paper's point; SimVQ does the same with a random C).

How this departs from the paper. The paper's C is 100,000 k-means centres (clustered per ImageNet
class) of patch features that a pretrained CLIP vision encoder gives for ImageNet training images.
No CLIP image encoder and no ImageNet are available offline, so the features here come from what
the project already has, named by `feature_source` (recorded with every run):

- "prior" (the default): the language-model word vectors of the VQCT prior (codebooks/; CuPL
  ImageNet descriptions encoded by all-MiniLM-L6-v2, 384-d; 3,544 adjectives and nouns). These are
  text features, not image features.
- "prior:ENCODER": the same words with another text encoder of codebooks.make_encoder (e.g. glove).

C is the K k-means centres of the chosen feature bank (20 Lloyd iterations from K distinct vectors
drawn with a fixed seed, so C depends on (source, K) only); K may not exceed the bank's size. The
FID Inception features of training images would be an image-feature source closer to the paper; it
is not offered (2,142 training tiles at ~7 images/s on these CPUs, and its feature API is in flux).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.core.errors import UserError
from bench.core.option_ranges import NON_NEGATIVE, option

from .base import (
    Quantizer,
    QuantOut,
    codebook_commitment_loss,
    flatten_latent,
    nearest_codes,
    straight_through,
    unflatten_latent,
)
from .codebook_tricks import kmeans
from .registry import register_method

CODEBOOK_KMEANS_ITERS = 20
CODEBOOK_SEED = 0


@dataclass
class VQGANLCOptions:
    # Where the frozen features come from (see the module docstring): "prior" | "prior:ENCODER".
    feature_source: str = "prior"
    # Weight of the codebook term ||sg[z] - e||^2; the commitment term has weight 1 (the released loss).
    beta: float = option(0.33, NON_NEGATIVE)


def _prior_config(source: str):
    from codebooks import BuildConfig

    if source == "prior":
        return BuildConfig()
    if source.startswith("prior:") and len(source) > len("prior:"):
        return BuildConfig(encoder=source[len("prior:"):])
    raise UserError(f"vqgan-lc: feature_source must be 'prior' or 'prior:ENCODER' (a codebooks text encoder, e.g. "
                    f"prior:glove), got {source!r}")


def feature_bank(source: str) -> Tensor:
    """The frozen features (N, F) of `source`: every adjective's and noun's vector of the prior."""
    from codebooks import build_prior

    prior = build_prior(_prior_config(source))
    return torch.cat([prior.adj_vectors, prior.noun_vectors]).float()


def bank_words(source: str) -> list[str]:
    """The word of each feature-bank row."""
    from codebooks import build_prior

    prior = build_prior(_prior_config(source))
    return list(prior.adjectives) + list(prior.nouns)


def frozen_codebook(source: str, codebook_size: int) -> Tensor:
    """C (K, F): the k-means centres of the feature bank, the same for every run with this source and K."""
    bank = feature_bank(source)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(CODEBOOK_SEED)
        centres, _ = kmeans(bank, codebook_size, CODEBOOK_KMEANS_ITERS, collective=False)
    return centres.contiguous()


@register_method("vqgan-lc", "VQGAN-LC-style: frozen codebook of pretrained features (here language-model word "
                 "vectors) through a learned projector")
class VQGANLCQuantizer(Quantizer):
    """VQGAN-LC (https://arxiv.org/abs/2406.11837) with offline feature sources."""

    Options = VQGANLCOptions

    bounded_memory = True

    @classmethod
    def check(cls, codebook_size: int, dim: int, options: VQGANLCOptions) -> None:
        """The source's name, then K against its number of features (builds the prior on first use)."""
        _prior_config(options.feature_source)
        if options.beta < 0:
            raise UserError(f"vqgan-lc: beta must be >= 0, got {options.beta}")
        n = feature_bank(options.feature_source).shape[0]
        if codebook_size > n:
            raise UserError(f"vqgan-lc: feature_source {options.feature_source!r} has {n} feature vectors, fewer than "
                            f"K={codebook_size} codes; choose K <= {n}")

    @classmethod
    def parameter_count(cls, codebook_size: int, dim: int, options: VQGANLCOptions) -> int:
        features = feature_bank(options.feature_source).shape[1]
        return codebook_size * features + features * dim + dim  # the frozen codebook (held) and the projector

    @classmethod
    def prepare(cls, codebook_size: int, dim: int, options: VQGANLCOptions) -> None:
        """Build and cache the prior once before runs start."""
        cls.check(codebook_size, dim, options)

    def __init__(self, codebook_size: int, dim: int, options: VQGANLCOptions) -> None:
        super().__init__()
        self.check(codebook_size, dim, options)
        self.options = options
        self.codebook_size = codebook_size
        self.latent_channels = dim
        self.register_buffer("frozen_codebook", frozen_codebook(options.feature_source, codebook_size))
        self.projector = nn.Linear(self.frozen_codebook.shape[1], dim)
        nn.init.normal_(self.projector.weight, std=dim**-0.5)  # as the released linear projector

    def code_labels(self) -> dict:
        """Each code named by the word whose vector lies nearest its centre, for the figures."""
        bank, words = feature_bank(self.options.feature_source), bank_words(self.options.feature_source)
        nearest = nearest_codes(self.frozen_codebook, bank)[:, 0]
        return {"groups": {}, "words": [words[i] for i in nearest.tolist()]}

    def codebook(self) -> Tensor:
        """The codes used, P(C) (K x dim)."""
        return self.projector(self.frozen_codebook)

    def forward(self, z: Tensor) -> QuantOut:
        rows = flatten_latent(z)
        codes = self.codebook()
        idx = nearest_codes(rows, codes)[:, 0]
        q = unflatten_latent(F.embedding(idx, codes), z)
        loss, logs = codebook_commitment_loss(q, z, self.options.beta, legacy=True)
        return QuantOut(straight_through(z, q), idx.view(z.shape[0], z.shape[2], z.shape[3]), loss, logs)

    def decode_indices(self, indices: Tensor) -> Tensor:
        return F.embedding(indices, self.codebook()).permute(0, 3, 1, 2).contiguous()
