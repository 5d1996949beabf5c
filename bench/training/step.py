"""One optimisation step of a run: the models, optimizers and losses, and the step itself."""
from __future__ import annotations

import torch
from torch import Tensor

import methods
from bench.models.autoencoder import VQAutoencoder
from bench.models.discriminator import PatchDiscriminator, adaptive_gan_weight, hinge_d_loss
from bench.models.perceptual import load_perceptual
from bench.runs.config import ResolvedRun
from bench.training import lr_groups, optimizers
from bench.training.disc_inputs import reconstructions_after_update
from bench.training.gan_schedule import gan_terms_on
from bench.training.replicas import SINGLE, Replicas


def micro_batch_seed(seed: int, step: int, micro_batch: int) -> int:
    """A torch seed that is a function of the run seed, the step and the micro-batch only."""
    return ((seed * 1_000_003 + step) * 65_537 + micro_batch) % (2**63)


# The "micro-batch" index of the quantizer's once-per-step update (its random dead-code choices): a
# function of the seed and the step only, the same on one worker accumulating and on N workers.
STEP_UPDATE = -1
# Micro-batch a's pass after the update (disc_inputs="after_update") is seeded as "micro-batch" -2 - a.
AFTER_UPDATE = -2


def uses_bf16(device: torch.device, precision: str) -> bool:
    """Whether the trainer autocasts to bf16: on CUDA unless the preset trains in fp32 (TrainPreset.precision;
    the official VQCT run's use_amp=False)."""
    return device.type == "cuda" and precision != "fp32"


def gradient_norm(parameters) -> Tensor:  # noqa: ANN001 - an iterable of parameters
    """L2 norm over every parameter's gradient (parameters without one are skipped)."""
    grads = [p.grad.detach().float().norm() for p in parameters if p.grad is not None]
    return torch.stack(grads).norm() if grads else torch.zeros(())


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or inf: a property of the run itself, so it is recorded, not retried."""


def build_model(run: ResolvedRun) -> VQAutoencoder:
    m = run.model
    quantizer = methods.instantiate(run.method, run.codebook_size, m.embed_dim, run.method_options)
    return VQAutoencoder(quantizer, ch=m.ch, ch_mult=m.ch_mult, num_res_blocks=m.num_res_blocks,
                         attn_resolutions=m.attn_resolutions, resolution=m.resolution, z_channels=m.z_channels,
                         dropout=m.dropout)


class TrainStep:
    """The models, optimizers and losses of one run; calling it does one optimisation step.

    Generator loss: L1 + perceptual_weight * perceptual + codebook_weight * quantizer loss, plus from
    `disc_start` on the hinge PatchGAN term with VQGAN's adaptive weight; then one discriminator step.
    A batch larger than the micro-batch is split into `accumulation` forward/backward passes whose
    gradients add up (each loss divided by their number) before each optimizer steps once; with
    data-parallel `replicas`, the gradients are then averaged over the workers.

    Randomness inside a micro-batch (dropout in VQCT's GCN, a method's random code replacement) is
    seeded by (run seed, step, micro-batch index over all workers), so one worker accumulating two
    micro-batches and two workers taking one each compute the same thing.
    """

    def __init__(self, run: ResolvedRun, device: torch.device, compile: bool = False,
                 replicas: Replicas = SINGLE, bf16: bool | None = None, channels_last: bool | None = None) -> None:
        t = self.t = run.train
        self.seed, self.replicas = run.seed, replicas
        self.device = device
        # On a GPU, channels-last convolutions are the fast layout for bf16 tensor cores; on the CPU
        # the default layout is kept (oneDNN picks its own). `bf16` and `channels_last` (None: this
        # choice) let the GPU check time the other variants of the same step (bench/speed/gpu/steps.py).
        on_gpu = device.type == "cuda"
        self.memory_format = (torch.channels_last if (on_gpu if channels_last is None else channels_last)
                              else torch.contiguous_format)
        self.model = build_model(run).to(device, memory_format=self.memory_format)
        self.disc = PatchDiscriminator(n_layers=t.disc_layers).to(device, memory_format=self.memory_format)
        self.compiled = compile
        if compile:
            # In place (nn.Module.compile), so state-dict keys and checkpoints are unchanged. The
            # quantizer is left eager: its code search loops in Python over blocks of rows.
            for module in (self.model.encoder, self.model.decoder, self.disc):
                module.compile()
        self.lr = run.lr
        self.accumulation = run.accumulation
        # A quantizer may train some of its parameters on a schedule of its own (VQBridge's annealing).
        self.lr_groups = self.model.quantizer.learning_rate_groups()
        self.opt_g = optimizers.Adam(lr_groups.generator_groups(self.model, self.lr_groups, self.lr, t.steps),
                                     lr=self.lr, betas=(0.5, 0.9))
        self.opt_d = optimizers.Adam(self.disc.parameters(), lr=self.lr, betas=(0.5, 0.9))
        if t.perceptual_weight == 0:
            self.perceptual, self.perceptual_name = None, "off"
        else:
            self.perceptual, self.perceptual_name = load_perceptual(device)
        self.use_bf16 = uses_bf16(device, t.precision) if bf16 is None else bf16
        self.modules = {"model": self.model, "disc": self.disc}
        self.optimizers = {"opt_g": self.opt_g, "opt_d": self.opt_d}

    def scheduled_rates(self) -> dict[str, float]:
        """The learning rates of the quantizer's own parameter groups, for the train log (none for most methods)."""
        return lr_groups.scheduled_rates(self.opt_g, self.lr_groups)

    def _autocast(self) -> torch.autocast:
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.use_bf16)

    def __call__(self, x: Tensor, step: int, grad_norm: bool = False) -> tuple[dict[str, Tensor], Tensor]:
        """One optimizer step on this worker's float batch in [-1, 1]: (detached loss terms, averaged
        over the micro-batches, and the code indices of the whole batch). `grad_norm`: also the L2
        norm of the generator's (averaged) gradient, as the term `grad_norm`; asked for on logged
        steps only, since on a GPU reading it back synchronises."""
        gan_on, disc_on = gan_terms_on(step, self.t.disc_start, self.t.disc_start_counts)
        micro = x.chunk(self.accumulation) if self.accumulation > 1 else (x,)
        self.opt_g.zero_grad(set_to_none=True)
        results = []
        quantizer = self.model.quantizer
        # Quantizers that update their own state from batch statistics (EMA codebooks) may take all of a
        # step's micro-batches as one update: begin_step/end_step, optional (methods/vqgan_ema.py).
        brackets = callable(getattr(quantizer, "begin_step", None)) and callable(getattr(quantizer, "end_step", None))
        if brackets:
            quantizer.begin_step()
        for a, m in enumerate(micro):
            torch.manual_seed(micro_batch_seed(self.seed, step, self.replicas.rank * self.accumulation + a))
            results.append(self._generator_pass(m.contiguous(memory_format=self.memory_format), step, gan_on))
        if brackets:
            torch.manual_seed(micro_batch_seed(self.seed, step, STEP_UPDATE))
            quantizer.end_step()
        self.replicas.mean_grads_(self.model.parameters())
        norm = gradient_norm(self.model.parameters()) if grad_norm else None
        lr_groups.set_scheduled_rates(self.opt_g, self.lr_groups, self.lr, step, self.t.steps)
        self.opt_g.step()
        terms = {k: torch.stack([r[0][k] for r in results]).mean() for k in results[0][0]}
        if norm is not None:
            terms["grad_norm"] = norm
        if disc_on:
            self.opt_d.zero_grad(set_to_none=True)  # the generator pass left gradients in the discriminator
            d_losses = []
            fakes = [r[1] for r in results]
            if self.t.disc_inputs == "after_update":
                first = self.replicas.rank * self.accumulation
                fakes = reconstructions_after_update(
                    self.model, [m.contiguous(memory_format=self.memory_format) for m in micro],
                    [micro_batch_seed(self.seed, step, AFTER_UPDATE - first - a) for a in range(len(micro))],
                    self._autocast)
            for m, xrec in zip(micro, fakes):
                with self._autocast():
                    d_loss = hinge_d_loss(self.disc(m.contiguous(memory_format=self.memory_format)).float(),
                                          self.disc(xrec).float())
                (d_loss / len(micro)).backward()
                d_losses.append(d_loss.detach())
            self.replicas.mean_grads_(self.disc.parameters())
            self.opt_d.step()
            terms["d_loss"] = torch.stack(d_losses).mean()
        elif self.t.disc_steps_before_start:
            self._zero_disc_step()
        return terms, torch.cat([r[2] for r in results])

    def _zero_disc_step(self) -> None:
        """The discriminator's optimizer step before its loss is on, as Lightning's loop takes it: zero
        gradients (taming's loss times adopt_weight's 0), so Adam's moments stay zero and no weight moves;
        only its step count, hence the bias correction of its first real steps, advances."""
        for p in self.disc.parameters():
            p.grad = torch.zeros_like(p)
        self.opt_d.step()

    def _generator_pass(self, x: Tensor, step: int, gan_on: bool) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """Forward and backward of the generator loss on one micro-batch: (detached terms, the
        detached reconstruction for the discriminator, the code indices)."""
        t, model, disc = self.t, self.model, self.disc
        with self._autocast():
            xrec, q = model(x)
            rec = (x - xrec.float()).abs().mean()
            nll = rec
            terms = {"rec": rec}
            if self.perceptual is not None:
                terms["perceptual"] = self.perceptual(x, xrec.float()).mean()
                nll = rec + t.perceptual_weight * terms["perceptual"]
            loss = nll + t.codebook_weight * q.loss
            if gan_on:
                g_loss = -disc(xrec).float().mean()
                d_weight = adaptive_gan_weight(nll, g_loss, model.last_layer, t.disc_weight)
                loss = loss + d_weight * g_loss
                terms.update(g_loss=g_loss, d_weight=d_weight)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"loss became {float(loss)} at step {step}")
        (loss / self.accumulation).backward()
        terms.update(loss=loss, quant=q.loss, **q.logs)
        return {k: v.detach().float() for k, v in terms.items()}, xrec.detach(), q.indices.detach()
