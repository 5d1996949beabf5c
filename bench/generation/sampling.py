"""Sampling token sequences from a prior: temperature, top-k and top-p (nucleus) filtering, and
classifier-free guidance for class-conditional priors.

Per step: logits / temperature, then top-k keeps the k largest, then top-p keeps the smallest set of
most likely tokens whose probability reaches p (always at least one), then one token is drawn from
the softmax of what is left. With guidance the batch runs twice, once with its labels and once with
the null class, and the logits used are u + s (c - u) (LlamaGen), before temperature and filtering.

Randomness comes only from the generator passed in, so a batch's samples are a function of the prior's
weights, its labels and that generator's seed: `batch_generator` seeds batch b of a prior run from
(seed, b), which makes sampling resumable batch by batch with the same images.
"""
from __future__ import annotations

import torch
from torch import Tensor

from bench.generation.config import SamplingConfig
from bench.generation.transformer import TokenPrior


def filter_logits(logits: Tensor, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """(B, V) logits with the filtered-out tokens at -inf. top_k 0 and top_p 1 keep everything."""
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # drop a token when the tokens before it already reach p; the most likely one always stays
        drop_sorted = (cum - sorted_logits.softmax(dim=-1)) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def guided_logits(cond: Tensor, uncond: Tensor, scale: float) -> Tensor:
    return uncond + scale * (cond - uncond)


def sampling_precision(device: torch.device) -> str:
    """How `sample` computes the prior's logits on `device`, for the record. Sampling is generation, not
    evaluation: bf16 on CUDA is kept for speed (the metrics then run in float32 on what was sampled)."""
    if device.type == "cuda":
        return "bf16 autocast, bf16 key/value cache; logits filtered and sampled in float32"
    return "float32"


def batch_generator(seed: int, batch: int, device: torch.device) -> torch.Generator:
    """The generator of sampling batch `batch` of a prior with this seed."""
    return torch.Generator(device=device).manual_seed((seed * 1_000_003 + batch) * 7_919 + 17)


@torch.no_grad()
def sample(prior: TokenPrior, n: int, cfg: SamplingConfig, generator: torch.Generator,
           labels: Tensor | None = None, device: torch.device | str = "cpu") -> Tensor:
    """(n, prior.length) int64 token sequences. `labels` (n,) for a class-conditional prior (None: the
    null class, i.e. unconditional); guidance applies when there are labels and cfg.scale != 1."""
    device = torch.device(device)
    prior.eval()
    null = torch.full((n,), prior.null_class, dtype=torch.long, device=device)
    labels = null if labels is None else labels.to(device).long()
    guided = cfg.cfg_scale != 1.0 and bool((labels != prior.null_class).any())
    stream_labels = torch.cat([labels, null]) if guided else labels
    use_bf16 = device.type == "cuda"
    cache = prior.new_cache(len(stream_labels), device, torch.bfloat16 if use_bf16 else torch.float32)
    tokens = torch.empty((n, prior.length), dtype=torch.long, device=device)
    last: Tensor | None = None
    for t in range(prior.length):
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
            step_in = None if last is None else (torch.cat([last, last]) if guided else last)
            logits = prior(stream_labels, step_in, cache)[:, -1].float()
        if guided:
            logits = guided_logits(logits[:n], logits[n:], cfg.cfg_scale)
        logits = filter_logits(logits / cfg.temperature, cfg.top_k, cfg.top_p)
        nxt = torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)
        tokens[:, t] = nxt[:, 0]
        last = nxt
    return tokens


def class_labels(start: int, n: int, num_classes: int) -> Tensor | None:
    """Labels of samples start .. start+n-1: classes in turn (i mod C), so every class gets an equal
    share of the samples (as the 50-per-class ImageNet protocol); None for an unconditional prior."""
    if num_classes == 0:
        return None
    return torch.arange(start, start + n) % num_classes
