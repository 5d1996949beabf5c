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

from .autoencoder import VQAutoencoder
from .checkpoint import CKPT_NAME, load_checkpoint, save_checkpoint
from .discriminator import PatchDiscriminator, adaptive_gan_weight, hinge_d_loss
from .metrics.usage import histogram_stats
from .metrics import keys
from .perceptual import load_perceptual

TRAIN_LOG = "train_log.jsonl"


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or inf: a property of the run itself, so it is recorded, not retried."""


def to_float(images: Tensor) -> Tensor:
    """uint8 [0, 255] -> float [-1, 1], the model's input range."""
    return images.float().div(127.5).sub(1.0)


def to_uint8(images: Tensor) -> Tensor:
    """float [-1, 1] -> uint8 [0, 255]: clamp, scale, round. The one boundary before every metric."""
    return images.detach().float().clamp(-1.0, 1.0).add(1.0).mul(127.5).round().to(torch.uint8)


class StepBatchSampler(Sampler[list[int]]):
    """Batches as a pure function of the step: epoch e is a permutation seeded by (seed, e), so a
    resumed run sees exactly the batches it would have seen."""

    def __init__(self, n: int, batch_size: int, seed: int, start_step: int, steps: int) -> None:
        self.n, self.batch_size, self.seed, self.start, self.steps = n, batch_size, seed, start_step, steps

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
                batch.append(int(perm[p % self.n]))
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


def train(resolved: dict[str, Any], dataset: Dataset, run_dir: Path, device: torch.device,
          on_checkpoint: Callable[[int], None] | None = None, progress: bool = True) -> TrainResult:
    """Train to `resolved["train"]["steps"]`, resuming from `run_dir/checkpoint.safetensors` if present."""
    t = resolved["train"]
    torch.manual_seed(resolved["seed"])
    model = build_model(resolved).to(device)
    disc = PatchDiscriminator(n_layers=t["disc_layers"]).to(device)
    lr = t["base_lr"] * t["batch_size"]  # taming's scaling: base_lr * batch * (GPUs = 1) * (accumulation = 1)
    opt_g = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.9))
    perceptual, perceptual_name = (None, "off") if t["perceptual_weight"] == 0 else load_perceptual(device)
    modules, optimizers = {"model": model, "disc": disc}, {"opt_g": opt_g, "opt_d": opt_d}

    ckpt = run_dir / CKPT_NAME
    start = load_checkpoint(ckpt, modules, optimizers, device) if ckpt.exists() else 0
    steps = t["steps"]
    sampler = StepBatchSampler(len(dataset), t["batch_size"], resolved["seed"], start, steps)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=t["num_workers"],
                        pin_memory=device.type == "cuda", persistent_workers=False)
    use_bf16 = device.type == "cuda"
    k = model.quantizer.codebook_size
    window = torch.zeros(k, dtype=torch.long)
    log_path = run_dir / TRAIN_LOG
    _truncate_log(log_path, start)  # entries written after the checkpoint we resume from are redone
    t0 = time.perf_counter()
    logs: dict[str, float] = {}
    bar = tqdm(total=steps, initial=start, disable=not progress, desc=resolved["method"], mininterval=1.0,
               dynamic_ncols=True, leave=False)
    model.train()
    disc.train()
    step = start
    for batch in loader:
        x = to_float(batch.to(device, non_blocking=True))
        gan_on = step >= t["disc_start"]
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
            xrec, q = model(x)
            rec = (x - xrec.float()).abs().mean()
            nll = rec
            if perceptual is not None:
                p_loss = perceptual(x, xrec.float()).mean()
                nll = rec + t["perceptual_weight"] * p_loss
            loss = nll + t["codebook_weight"] * q.loss
            if gan_on:
                g_loss = -disc(xrec).float().mean()
                d_weight = adaptive_gan_weight(nll, g_loss, model.last_layer, t["disc_weight"])
                loss = loss + d_weight * g_loss
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"loss became {float(loss)} at step {step}")
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        if gan_on:
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
                d_loss = hinge_d_loss(disc(x).float(), disc(xrec.detach()).float())
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        step += 1
        window += torch.bincount(q.indices.detach().reshape(-1).cpu(), minlength=k)
        if step % t["log_every"] == 0 or step == steps:
            usage = histogram_stats(window)
            logs = {"step": step, "loss": loss.item(), "rec": rec.item(), "quant": q.loss.item(),
                    **{k_: float(v) for k_, v in q.logs.items()}, "lr": lr,
                    keys.UTILIZATION: usage[keys.UTILIZATION], keys.PERPLEXITY: usage[keys.PERPLEXITY],
                    "elapsed_s": time.perf_counter() - t0}
            if perceptual is not None:
                logs["perceptual"] = p_loss.item()
            if gan_on:
                logs["g_loss"], logs["d_loss"], logs["d_weight"] = g_loss.item(), d_loss.item(), float(d_weight)
            with open(log_path, "a") as f:
                f.write(json.dumps(logs) + "\n")
            window.zero_()
            bar.set_postfix(loss=f"{logs['loss']:.4f}", usage=f"{100 * logs[keys.UTILIZATION]:.0f}%")
        bar.update(1)
        if step % t["ckpt_every"] == 0 or step == steps:
            save_checkpoint(ckpt, step, modules, optimizers)
            if on_checkpoint is not None:
                on_checkpoint(step)
    bar.close()
    return TrainResult(model, step, start, time.perf_counter() - t0, perceptual_name, logs)


def _truncate_log(path: Path, last_step: int) -> None:
    if path.exists():
        kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= last_step]
        path.write_text("".join(line + "\n" for line in kept))


def read_train_log(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / TRAIN_LOG
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


__all__ = ["TrainResult", "NonFiniteLoss", "build_model", "pick_device", "read_train_log", "to_float", "to_uint8", "train"]
