"""Training-step rows: one full optimisation step per preset and method (encoder, quantizer, decoder,
losses, the GAN where the preset turns it on, backward, both optimizers), with images/s, peak memory
and the quantizer's share of the step."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from bench.speed.memory import peak_mb
from bench.speed.quantizers import fwd_bwd, quantizer_forward
from bench.speed.timing import median_ms

# Timed from one codebook size: large enough that the search is not trivial, within VQCT's offline prior.
CODEBOOK_SIZE = 1024


def train_step_rows(presets: list[str], method_names: list[str], device: torch.device, reps: int,
                    batch: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
    """Per preset and method: ms per full training step, images/s, peak memory and the quantizer's
    share of the step. `batch` replaces a preset's global batch (as one micro-batch) where a full one
    would take too long (the 128 and 256 px presets on the CPU)."""
    return [_step_row(p, m, device, reps, (batch or {}).get(p)) for p in presets for m in method_names]


@dataclass
class StepSetup:
    """One preset and method ready to time: its resolved run, the TrainStep and a random input batch."""

    run: Any  # bench.runs.config.ResolvedRun
    learner: Any  # bench.training.step.TrainStep
    x: torch.Tensor

    def __call__(self) -> None:
        self.learner(self.x, 0)


def step_setup(preset: str, method: str, device: torch.device, batch: int | None = None,
               **step_options: Any) -> StepSetup:
    """The full training step of a preset and method at K=CODEBOOK_SIZE, its GAN on where the preset
    ever turns it on; `batch` replaces the global batch (as one micro-batch); `step_options` go to
    TrainStep (compile, bf16, channels_last)."""
    from bench.runs.config import RunConfig, resolve
    from bench.training.step import TrainStep

    run = resolve(RunConfig(method=method, preset=preset, codebook_size=CODEBOOK_SIZE))
    if batch:
        run = run.with_train(batch_size=batch, micro_batch=None)
    # a preset whose GAN ever starts is timed with it on (the steps that dominate a long run)
    run = run.with_train(disc_start=0 if run.train.disc_start < run.train.steps else 10**9)
    torch.manual_seed(0)
    learner = TrainStep(run, device, **step_options)
    r, b = run.model.resolution, run.train.batch_size
    return StepSetup(run, learner, torch.rand(b, 3, r, r, device=device) * 2 - 1)


def _step_row(preset: str, method: str, device: torch.device, reps: int, batch: int | None) -> dict[str, Any]:
    step = step_setup(preset, method, device, batch)
    run, learner, x = step.run, step.learner, step.x
    r, b = run.model.resolution, run.train.batch_size
    step_ms = median_ms(step, device, warmup=1, reps=reps)
    step_mb = peak_mb(step, device)
    with torch.no_grad():
        z = learner.model.quant_conv(learner.model.encoder(x[: run.micro_batch])).detach().requires_grad_(True)
    q = learner.model.quantizer
    # The quantizer runs once per micro-batch of the step.
    q_ms = median_ms(fwd_bwd(q, quantizer_forward(q), z), device, reps=reps) * run.accumulation
    return {"preset": preset, "method": method, "batch": b, "resolution": r, "step_ms": step_ms,
            "images_per_s": b / step_ms * 1e3, "peak_mb": step_mb, "quantizer_ms": q_ms,
            "quantizer_share": q_ms / step_ms, "perceptual": learner.perceptual_name,
            "gan": run.train.disc_start == 0}
