"""When the PatchGAN terms are on: `disc_start` read in the unit a preset names (TrainPreset.disc_start_counts).

taming's VQLPIPSWithDiscriminator multiplies both GAN terms by `adopt_weight(1, global_step, disc_start)`,
which is 0 while `global_step < disc_start`. What `global_step` counts is the training loop's: one per
batch in vqbench ("batches", and in Lightning before 1.6); every optimizer step of every optimizer from
Lightning 1.6.0 on ("optimizer_steps"; its change log notes that `trainer.global_step` now accounts for
multiple optimizers: pull request #11805), incremented right after each `optimizer.step()`. With taming's two
optimizers (autoencoder, then discriminator), batch b's autoencoder pass sees global_step 2b and its
discriminator pass 2b + 1, so VQCT's official run (pytorch-lightning 1.6.1, disc_start 10000) turned its
GAN on after 5,000 batches.
"""
from __future__ import annotations

BATCHES = "batches"
OPTIMIZER_STEPS = "optimizer_steps"
OPTIMIZERS = 2  # the autoencoder's and the discriminator's: the steps Lightning >= 1.6 counts per batch


def gan_terms_on(batch: int, disc_start: int, counts: str) -> tuple[bool, bool]:
    """(the generator's GAN term is on, the discriminator's loss is on) at 0-based `batch`."""
    if counts == BATCHES:
        return batch >= disc_start, batch >= disc_start
    if counts == OPTIMIZER_STEPS:
        return OPTIMIZERS * batch >= disc_start, OPTIMIZERS * batch + 1 >= disc_start
    raise ValueError(f"disc_start_counts must be {BATCHES!r} or {OPTIMIZER_STEPS!r}, got {counts!r}")


def first_gan_batch(disc_start: int, counts: str) -> int:
    """The first batch whose generator loss has the GAN term (what `--list` and the docs quote)."""
    gan_terms_on(0, disc_start, counts)  # an unknown unit raises
    return max(disc_start if counts == BATCHES else -(-disc_start // OPTIMIZERS), 0)
