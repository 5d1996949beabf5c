"""Trains a prior on cached token sequences: a linear loop over steps, like the tokenizer's.

Deterministic given the seed and resumable from its last checkpoint with the same weights as an
uninterrupted run: the batch of a step comes from StepBatchSampler (a function of seed and step), and
the randomness inside a step (label dropout, dropout) is seeded by (seed, step), so it does not depend
on what ran before. Checkpoints go through bench.training.checkpoint (one atomic safetensors file).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from bench.generation import folder
from bench.generation.config import PriorConfig
from bench.generation.transformer import TokenPrior
from bench.training import optimizers, train_log
from bench.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from bench.training.sampler import StepBatchSampler
from bench.training.step import NonFiniteLoss, micro_batch_seed


@dataclass
class PriorTrainResult:
    steps: int
    resumed_from: int
    train_s: float
    last_logs: dict[str, float] = field(default_factory=dict)
    discarded_checkpoint: str | None = None


def build_prior(cfg: PriorConfig, vocab_size: int, length: int, num_classes: int) -> TokenPrior:
    """The prior's initial weights: a function of the prior seed only."""
    torch.manual_seed(cfg.seed)
    return TokenPrior(cfg.model, vocab_size, length, num_classes)


def make_optimizer(prior: TokenPrior, cfg: PriorConfig) -> optimizers.AdamW:
    t = cfg.train
    return optimizers.AdamW(prior.optimizer_groups(t.weight_decay), lr=cfg.lr, betas=(t.beta1, t.beta2))


def lr_at(cfg: PriorConfig, step: int) -> float:
    """Linear warm-up over `warmup_steps`, then constant."""
    w = cfg.train.warmup_steps
    return cfg.lr * min(1.0, (step + 1) / w) if w else cfg.lr


def sequence_loss(prior: TokenPrior, tokens: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy (nats per token) of predicting every token from the condition and the
    tokens before it."""
    logits = prior(labels, tokens[:, :-1])
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tokens.reshape(-1))


def drop_labels(labels: Tensor, p: float, null_class: int) -> Tensor:
    """Each label replaced by the null class with probability p (classifier-free guidance training)."""
    if p <= 0:
        return labels
    return torch.where(torch.rand(labels.shape, device=labels.device) < p, torch.full_like(labels, null_class), labels)


def train_prior(prior: TokenPrior, cfg: PriorConfig, sequences: Tensor, labels: Tensor | None, prior_dir: Path,
                device: torch.device, progress: bool = True,
                on_checkpoint: Callable[[int], None] | None = None) -> PriorTrainResult:
    """Train `prior` (already on `device`) to cfg.train.steps on (N, T) sequences, resuming from the
    folder's checkpoint when there is one. Labels (N,) for a class-conditional prior, else None."""
    t = cfg.train
    opt = make_optimizer(prior, cfg)
    ckpt = prior_dir / folder.CHECKPOINT
    start, discarded = 0, None
    if ckpt.exists():
        try:
            start = load_checkpoint(ckpt, {"prior": prior}, {"opt": opt}, device)
        except CheckpointError as exc:
            # as the tokenizer's loop: a damaged checkpoint costs its steps, never the run; the seed
            # fixes the initial weights, so restarting gives the result of a run that never had it
            discarded = str(exc)
            ckpt.replace(ckpt.with_name(ckpt.name + ".damaged"))
            print(f"warning: {exc}; kept as {ckpt.name}.damaged, prior training restarts from step 0", file=sys.stderr)
            prior.load_state_dict(build_prior(cfg, prior.vocab_size, prior.length, prior.num_classes).state_dict())
            opt = make_optimizer(prior, cfg)
    train_log.truncate(prior_dir, start)
    sequences = sequences.to(device)
    null = torch.full((len(sequences),), prior.null_class, dtype=torch.long, device=device)
    labels = null if labels is None else labels.to(device)
    sampler = StepBatchSampler(len(sequences), t.batch_size, cfg.seed, start, t.steps)
    use_bf16 = device.type == "cuda"
    t0 = time.perf_counter()
    logs: dict[str, float] = {}
    bar = tqdm(total=t.steps, initial=start, disable=not progress, desc="prior", mininterval=1.0, leave=False)
    prior.train()
    step = start
    for batch in sampler:
        torch.manual_seed(micro_batch_seed(cfg.seed, step, 0))
        idx = torch.as_tensor(batch, device=device)
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, step)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
            loss = sequence_loss(prior, sequences[idx], drop_labels(labels[idx], t.class_dropout, prior.null_class))
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"prior loss became {float(loss)} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(prior.parameters(), t.grad_clip if t.grad_clip > 0 else float("inf"))
        opt.step()
        step += 1
        if step % t.log_every == 0 or step == t.steps:
            logs = {"step": step, "loss": float(loss.detach()), "grad_norm": float(grad_norm), "lr": lr_at(cfg, step - 1),
                    "elapsed_s": time.perf_counter() - t0}
            train_log.append(prior_dir, logs)
            bar.set_postfix(loss=f"{logs['loss']:.3f}")
        bar.update(1)
        if step % t.ckpt_every == 0 or step == t.steps:
            save_checkpoint(ckpt, step, {"prior": prior}, {"opt": opt})
            if on_checkpoint is not None:
                on_checkpoint(step)
    bar.close()
    prior.eval()
    return PriorTrainResult(step, start, time.perf_counter() - t0, logs, discarded)


@torch.no_grad()
def mean_nll(prior: TokenPrior, sequences: Tensor, labels: Tensor | None, device: torch.device,
             batch_size: int = 256) -> float:
    """Mean negative log-likelihood in nats per token over (N, T) sequences (the held-out split),
    with their labels for a class-conditional prior; float32 throughout."""
    prior.eval()
    total, count = 0.0, 0
    for i in range(0, len(sequences), batch_size):
        seq = sequences[i : i + batch_size].to(device)
        lab = (torch.full((len(seq),), prior.null_class, dtype=torch.long, device=device) if labels is None
               else labels[i : i + batch_size].to(device))
        logits = prior(lab, seq[:, :-1]).float()
        total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), seq.reshape(-1), reduction="sum"))
        count += seq.numel()
    return total / max(count, 1)
