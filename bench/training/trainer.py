"""Trains one VQ autoencoder. Knows nothing of scheduling: runs the same in-process, in a Ray worker
or on a GPU node. Deterministic given the seed, and resumable from its last checkpoint with the same
result as an uninterrupted run (the data order is a function of the step, the RNG state is saved)."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

import methods

from bench.models.autoencoder import VQAutoencoder
from bench.training.checkpoint import CKPT_NAME, load_checkpoint, save_checkpoint
from bench.models.discriminator import PatchDiscriminator, adaptive_gan_weight, hinge_d_loss
from bench.evaluation.metrics.usage import histogram_stats
from bench.evaluation.metrics import keys
from bench.models.perceptual import load_perceptual

TRAIN_LOG = "train_log.jsonl"


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or inf: a property of the run itself, so it is recorded, not retried."""


def to_float(images: Tensor) -> Tensor:
    """uint8 [0, 255] -> float [-1, 1], the model's input range."""
    return images.float().div(127.5).sub(1.0)


def to_uint8(images: Tensor) -> Tensor:
    """float [-1, 1] -> uint8 [0, 255]: clamp, scale, round. The one boundary before every metric."""
    return images.detach().float().clamp(-1.0, 1.0).add(1.0).mul(127.5).round().to(torch.uint8)


class StepBatchSampler(Sampler[list]):
    """Batches as a pure function of the step: epoch e is a permutation seeded by (seed, e), so a
    resumed run sees exactly the batches it would have seen. With `with_epoch`, keys are
    (index, epoch) so that datasets with random augmentation draw a new crop every epoch."""

    def __init__(self, n: int, batch_size: int, seed: int, start_step: int, steps: int, with_epoch: bool = False) -> None:
        self.n, self.batch_size, self.seed, self.start, self.steps = n, batch_size, seed, start_step, steps
        self.with_epoch = with_epoch

    def _perm(self, epoch: int) -> Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=g)

    def __iter__(self) -> Iterator[list[int]]:
        epoch, perm = -1, None
        for step in range(self.start, self.steps):
            batch = []
            for p in range(step * self.batch_size, (step + 1) * self.batch_size):
                if p // self.n != epoch:
                    epoch = p // self.n
                    perm = self._perm(epoch)
                index = int(perm[p % self.n])
                batch.append((index, epoch) if self.with_epoch else index)
            yield batch

    def __len__(self) -> int:
        return max(0, self.steps - self.start)


def pick_device(name: str | None) -> torch.device:
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_model(resolved: dict[str, Any]) -> VQAutoencoder:
    m = resolved["model"]
    quantizer = methods.create(resolved["method"], resolved["codebook_size"], m["embed_dim"], **resolved["method_options"])
    return VQAutoencoder(quantizer, ch=m["ch"], ch_mult=m["ch_mult"], num_res_blocks=m["num_res_blocks"],
                         attn_resolutions=m["attn_resolutions"], resolution=m["resolution"],
                         z_channels=m["z_channels"], dropout=m["dropout"])


@dataclass
class TrainResult:
    model: VQAutoencoder
    steps: int
    resumed_from: int
    train_s: float
    perceptual: str
    last_logs: dict[str, float] = field(default_factory=dict)


class TrainStep:
    """The models, optimizers and losses of one run; calling it does one optimisation step.

    Generator loss: L1 + perceptual_weight * perceptual + codebook_weight * quantizer loss, plus from
    `disc_start` on the hinge PatchGAN term with VQGAN's adaptive weight; then one discriminator step.
    """

    def __init__(self, resolved: dict[str, Any], device: torch.device, compile: bool = False) -> None:
        t = self.t = resolved["train"]
        self.device = device
        # On a GPU, channels-last convolutions are the fast layout for bf16 tensor cores; on the CPU
        # the default layout is kept (oneDNN picks its own).
        self.memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
        self.model = build_model(resolved).to(device, memory_format=self.memory_format)
        self.disc = PatchDiscriminator(n_layers=t["disc_layers"]).to(device, memory_format=self.memory_format)
        self.compiled = compile
        if compile:
            # In place (nn.Module.compile), so state-dict keys and checkpoints are unchanged. The
            # quantizer is left eager: its code search loops in Python over blocks of rows.
            for module in (self.model.encoder, self.model.decoder, self.disc):
                module.compile()
        self.lr = t["base_lr"] * t["batch_size"]  # taming's scaling: base_lr * batch * (GPUs = 1) * (accumulation = 1)
        self.opt_g = torch.optim.Adam(self.model.parameters(), lr=self.lr, betas=(0.5, 0.9))
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=self.lr, betas=(0.5, 0.9))
        if t["perceptual_weight"] == 0:
            self.perceptual, self.perceptual_name = None, "off"
        else:
            self.perceptual, self.perceptual_name = load_perceptual(device)
        self.use_bf16 = device.type == "cuda"
        self.modules = {"model": self.model, "disc": self.disc}
        self.optimizers = {"opt_g": self.opt_g, "opt_d": self.opt_d}

    def _autocast(self) -> torch.autocast:
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.use_bf16)

    def __call__(self, x: Tensor, step: int) -> tuple[dict[str, Tensor], Tensor]:
        """One step on a float batch in [-1, 1]: (detached loss terms, code indices)."""
        t, model, disc = self.t, self.model, self.disc
        x = x.contiguous(memory_format=self.memory_format)
        gan_on = step >= t["disc_start"]
        with self._autocast():
            xrec, q = model(x)
            rec = (x - xrec.float()).abs().mean()
            nll = rec
            terms = {"rec": rec}
            if self.perceptual is not None:
                terms["perceptual"] = self.perceptual(x, xrec.float()).mean()
                nll = rec + t["perceptual_weight"] * terms["perceptual"]
            loss = nll + t["codebook_weight"] * q.loss
            if gan_on:
                g_loss = -disc(xrec).float().mean()
                d_weight = adaptive_gan_weight(nll, g_loss, model.last_layer, t["disc_weight"])
                loss = loss + d_weight * g_loss
                terms.update(g_loss=g_loss, d_weight=d_weight)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"loss became {float(loss)} at step {step}")
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        if gan_on:
            with self._autocast():
                terms["d_loss"] = hinge_d_loss(disc(x).float(), disc(xrec.detach()).float())
            self.opt_d.zero_grad(set_to_none=True)
            terms["d_loss"].backward()
            self.opt_d.step()
        terms.update(loss=loss, quant=q.loss, **q.logs)
        return {k: v.detach() for k, v in terms.items()}, q.indices.detach()


def train(resolved: dict[str, Any], dataset: Dataset, run_dir: Path, device: torch.device,
          on_checkpoint: Callable[[int], None] | None = None, progress: bool = True, compile: bool = False) -> TrainResult:
    """Train to `resolved["train"]["steps"]`, resuming from `run_dir/checkpoint.safetensors` if present."""
    t = resolved["train"]
    torch.manual_seed(resolved["seed"])
    learner = TrainStep(resolved, device, compile=compile)
    model = learner.model
    ckpt = run_dir / CKPT_NAME
    start = load_checkpoint(ckpt, learner.modules, learner.optimizers, device) if ckpt.exists() else 0
    steps = t["steps"]
    sampler = StepBatchSampler(len(dataset), t["batch_size"], resolved["seed"], start, steps,
                               with_epoch=getattr(dataset, "takes_epoch", False))
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=t["num_workers"],
                        pin_memory=device.type == "cuda", persistent_workers=False)
    k = model.quantizer.codebook_size
    window = torch.zeros(k, dtype=torch.long)  # code histogram since the last log line
    log_path = run_dir / TRAIN_LOG
    _truncate_log(log_path, start)  # entries written after the checkpoint we resume from are redone
    t0 = time.perf_counter()
    logs: dict[str, float] = {}
    bar = tqdm(total=steps, initial=start, disable=not progress, desc=resolved["method"], mininterval=1.0,
               dynamic_ncols=True, leave=False)
    model.train()
    learner.disc.train()
    step = start
    for batch in loader:
        terms, indices = learner(to_float(batch.to(device, non_blocking=True)), step)
        step += 1
        window += torch.bincount(indices.reshape(-1).cpu(), minlength=k)
        if step % t["log_every"] == 0 or step == steps:
            usage = histogram_stats(window)
            logs = {"step": step, **{name: float(v) for name, v in terms.items()}, "lr": learner.lr,
                    keys.UTILIZATION: usage[keys.UTILIZATION], keys.PERPLEXITY: usage[keys.PERPLEXITY],
                    "elapsed_s": time.perf_counter() - t0}
            with open(log_path, "a") as f:
                f.write(json.dumps(logs) + "\n")
            window.zero_()
            bar.set_postfix(loss=f"{logs['loss']:.4f}", usage=f"{100 * logs[keys.UTILIZATION]:.0f}%")
        bar.update(1)
        if step % t["ckpt_every"] == 0 or step == steps:
            save_checkpoint(ckpt, step, learner.modules, learner.optimizers)
            if on_checkpoint is not None:
                on_checkpoint(step)
    bar.close()
    return TrainResult(model, step, start, time.perf_counter() - t0, learner.perceptual_name, logs)


def _truncate_log(path: Path, last_step: int) -> None:
    if path.exists():
        kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= last_step]
        path.write_text("".join(line + "\n" for line in kept))


def read_train_log(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / TRAIN_LOG
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


__all__ = ["TrainResult", "TrainStep", "NonFiniteLoss", "build_model", "pick_device", "read_train_log", "to_float", "to_uint8", "train"]
