"""The trainer's side of the vqct-official preset, on the smoke model: when the GAN starts under each
counting of disc_start, the discriminator trained on reconstructions recomputed after the autoencoder's
update (the quantizer's own state untouched by that pass), its zero-gradient Adam steps before the GAN
starts, and fp32 on CUDA (the decision, checked on the CPU)."""
import copy

import pytest
import torch

from bench.runs.config import RunConfig, resolve
from bench.training import gan_schedule
from bench.training.step import TrainStep, uses_bf16

R = 16  # the smoke preset's resolution


def _learner(method="vqgan", **train):
    run = resolve(RunConfig(method=method, preset="smoke", codebook_size=16)).with_train(**train)
    torch.manual_seed(0)
    return TrainStep(run, torch.device("cpu"))


def _batch(seed=0, n=4):
    return torch.rand(n, 3, R, R, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_the_first_gan_batch_under_both_countings():
    on = gan_schedule.gan_terms_on
    # vqbench's loop (and Lightning before 1.6): disc_start counts batches
    assert on(9_999, 10_000, "batches") == (False, False) and on(10_000, 10_000, "batches") == (True, True)
    # Lightning 1.6.1, two optimizers: batch b's passes see global_step 2b and 2b + 1
    assert on(4_999, 10_000, "optimizer_steps") == (False, False)
    assert on(5_000, 10_000, "optimizer_steps") == (True, True)
    # an odd disc_start turns the discriminator's loss on one batch before the generator's GAN term
    assert on(5_000, 10_001, "optimizer_steps") == (False, True) and on(5_001, 10_001, "optimizer_steps") == (True, True)
    assert gan_schedule.first_gan_batch(10_000, "optimizer_steps") == 5_000
    assert gan_schedule.first_gan_batch(10_000, "batches") == 10_000
    with pytest.raises(ValueError, match="disc_start_counts"):
        on(0, 1, "epochs")


@pytest.mark.parametrize("counts, off, first", [("batches", 9_999, 10_000), ("optimizer_steps", 4_999, 5_000)])
def test_the_trainer_turns_the_gan_on_at_that_batch(counts, off, first):
    learner = _learner(disc_start=10_000, disc_start_counts=counts)
    before, _ = learner(_batch(), off)
    after, _ = learner(_batch(), first)
    assert not {"g_loss", "d_loss"} & set(before)
    assert {"g_loss", "d_weight", "d_loss"} <= set(after)


def _fakes_seen(learner, x, step=0):
    """The images the discriminator's step took as fakes (its last call's input), and the step's terms."""
    seen = []
    hook = learner.disc.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    terms, _ = learner(x, step)
    hook.remove()
    return seen[-1], terms


def test_the_discriminator_sees_reconstructions_made_after_the_update():
    x = _batch()
    recon = {}
    for inputs in ("generator_pass", "after_update"):
        learner = _learner(disc_start=0, disc_inputs=inputs)
        with torch.no_grad():
            before = learner.model(x)[0]
        fake, terms = _fakes_seen(learner, x)
        with torch.no_grad():
            after = learner.model(x)[0]  # vqgan's forward has no randomness: the same seed is not needed
        assert "d_loss" in terms
        recon[inputs] = (fake, before, after)
    fake, before, after = recon["generator_pass"]
    assert torch.equal(fake, before) and not torch.allclose(fake, after)
    fake, before, after = recon["after_update"]
    assert torch.equal(fake, after) and not torch.allclose(fake, before)
    # the autoencoder's update is the same either way; only the discriminator's inputs differ
    assert torch.equal(recon["generator_pass"][2], recon["after_update"][2])


def test_the_pass_after_the_update_leaves_the_quantizers_own_state_alone():
    """vqgan-ema moves its codebook in every training forward: the recomputation must not move it twice."""
    x = _batch()
    states = {}
    for inputs in ("generator_pass", "after_update"):
        learner = _learner("vqgan-ema", disc_start=0, disc_inputs=inputs)
        initial = copy.deepcopy(learner.model.quantizer.state_dict())
        learner(x, 0)
        states[inputs] = learner.model.quantizer.state_dict()
    assert any(not torch.equal(initial[k], v) for k, v in states["generator_pass"].items())  # the EMA did move
    for k, v in states["generator_pass"].items():
        assert torch.equal(v, states["after_update"][k]), k


def test_the_discriminators_adam_steps_on_zero_gradients_before_the_gan_starts():
    for steps_before in (False, True):
        learner = _learner(disc_start=10**9, disc_steps_before_start=steps_before)
        weights = [p.detach().clone() for p in learner.disc.parameters()]
        for step in range(3):
            terms, _ = learner(_batch(step), step)
            assert "d_loss" not in terms
        assert all(torch.equal(w, p) for w, p in zip(weights, learner.disc.parameters()))  # nothing moves
        counts = {float(s["step"]) for s in learner.opt_d.state.values()}
        assert counts == ({3.0} if steps_before else set())
        if steps_before:  # Adam's moments stay zero: only its step count (its bias correction) advanced
            assert all(not s["exp_avg"].any() and not s["exp_avg_sq"].any() for s in learner.opt_d.state.values())


def test_the_presets_name_only_what_the_trainer_knows():
    from bench.runs import presets

    assert set(presets.DISC_START_COUNTS) == {gan_schedule.BATCHES, gan_schedule.OPTIMIZER_STEPS}
    with pytest.raises(ValueError, match="disc_inputs"):
        presets.TrainPreset(batch_size=8, base_lr=1e-4, steps=1, disc_start=0, disc_inputs="before_update")


def test_fp32_turns_bf16_autocast_off_on_cuda():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert uses_bf16(cuda, "auto") and not uses_bf16(cuda, "fp32")
    assert not uses_bf16(cpu, "auto") and not uses_bf16(cpu, "fp32")
