"""One optimisation step of a run: the models, optimizers and losses, and the step itself."""
from __future__ import annotations

import torch
from torch import Tensor

import methods
from bench.models.autoencoder import VQAutoencoder
from bench.models.discriminator import PatchDiscriminator, adaptive_gan_weight, hinge_d_loss
from bench.models.perceptual import load_perceptual
from bench.runs.config import ResolvedRun


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
    """

    def __init__(self, run: ResolvedRun, device: torch.device, compile: bool = False) -> None:
        t = self.t = run.train
        self.device = device
        # On a GPU, channels-last convolutions are the fast layout for bf16 tensor cores; on the CPU
        # the default layout is kept (oneDNN picks its own).
        self.memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
        self.model = build_model(run).to(device, memory_format=self.memory_format)
        self.disc = PatchDiscriminator(n_layers=t.disc_layers).to(device, memory_format=self.memory_format)
        self.compiled = compile
        if compile:
            # In place (nn.Module.compile), so state-dict keys and checkpoints are unchanged. The
            # quantizer is left eager: its code search loops in Python over blocks of rows.
            for module in (self.model.encoder, self.model.decoder, self.disc):
                module.compile()
        self.lr = t.base_lr * t.batch_size  # taming's scaling: base_lr * batch * (GPUs = 1) * (accumulation = 1)
        self.opt_g = torch.optim.Adam(self.model.parameters(), lr=self.lr, betas=(0.5, 0.9))
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=self.lr, betas=(0.5, 0.9))
        if t.perceptual_weight == 0:
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
        gan_on = step >= t.disc_start
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
