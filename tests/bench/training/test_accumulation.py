"""Gradient accumulation: a global batch made of micro-batches trains like the whole batch at once
where nothing depends on the batch's size (the generator without the GAN term), and the recipe's
global batch, micro-batch and learning rate are what the record says."""
import pytest
import torch

from bench.core.errors import UserError
from bench.runs.config import RunConfig, resolve
from bench.training.step import TrainStep


def _learner(micro_batch):
    run = resolve(RunConfig(method="vqgan", preset="smoke", codebook_size=16)).with_train(micro_batch=micro_batch)
    torch.manual_seed(0)
    return run, TrainStep(run, torch.device("cpu"))


def test_two_micro_batches_step_like_the_whole_batch():
    (whole_run, whole), (split_run, split) = _learner(None), _learner(4)
    assert (whole_run.accumulation, split_run.accumulation) == (1, 2)
    assert whole.lr == split.lr == whole_run.train.base_lr * whole_run.train.batch_size
    r = whole_run.model.resolution
    x = torch.rand(whole_run.train.batch_size, 3, r, r, generator=torch.Generator().manual_seed(1)) * 2 - 1
    # Compare the gradients the optimizer would apply (Adam's first step is about lr * sign(g), so
    # parameters whose gradient is ~0 would differ by rounding alone).
    for learner in (whole, split):
        learner.opt_g.step = lambda: None
    step = 0  # before disc_start: no batch-norm discriminator in the generator loss
    terms_whole, idx_whole = whole(x, step)
    terms_split, idx_split = split(x, step)
    assert torch.equal(idx_whole, idx_split)
    torch.testing.assert_close(terms_whole["rec"], terms_split["rec"], rtol=1e-5, atol=1e-6)
    for (name, a), b in zip(whole.model.named_parameters(), split.model.parameters()):
        assert a.grad is not None and b.grad is not None, name
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-7, msg=name)


def test_the_gan_phase_runs_per_micro_batch():
    run, learner = _learner(4)
    r = run.model.resolution
    x = torch.rand(run.train.batch_size, 3, r, r) * 2 - 1
    terms, indices = learner(x, run.train.disc_start)
    assert {"d_loss", "g_loss", "d_weight"} <= set(terms) and indices.shape[0] == run.train.batch_size
    assert all(torch.isfinite(v) for v in terms.values())


def test_paper_preset_has_the_official_global_batch_and_lr():
    run = resolve(RunConfig(method="vqgan", preset="paper", codebook_size=1024))
    assert run.optimization() == {"global_batch": 16, "micro_batch": 8, "workers": 1, "accumulation": 2,
                                  "lr": pytest.approx(7.2e-5)}
    two = resolve(RunConfig(method="vqgan", preset="paper", codebook_size=1024, workers=2))
    assert two.optimization()["accumulation"] == 1 and two.run_id == run.run_id  # how, not what
    with pytest.raises(UserError, match="does not split into 3 workers"):
        resolve(RunConfig(method="vqgan", preset="paper", codebook_size=1024, workers=3))


def test_without_a_preset_the_machine_decides_and_says_so(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run = resolve(RunConfig(method="vqgan", codebook_size=16))
    assert run.preset == "cpu-tiny" and run.preset_source.startswith("default for a CPU-only machine")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve(RunConfig(method="vqgan", codebook_size=16)).preset == "gpu-tiny"
    assert resolve(RunConfig(method="vqgan", codebook_size=16, preset="smoke")).preset_source == "given"


@pytest.mark.parametrize("method,options", [
    ("vqgan-ema", {}), ("vqgan-ema", {"threshold_ema_dead_code": 2.0}),
    ("rvq", {}), ("rvq", {"threshold_ema_dead_code": 2.0}), ("rvq", {"shared_codebook": True}),
    ("cvq", {}),
])
def test_codebook_state_takes_one_update_per_step_from_every_micro_batch(method, options):
    """Quantizers that update their own state (EMA codebooks, CVQ's usage and anchors) under
    accumulation: the statistics of both micro-batches make one update (and one re-anchoring of dead
    codes) at the end of the step, as the whole batch at once does. The optimizer step is left out:
    Adam's first step is about lr * sign(g), so codes learnt by gradient would differ by rounding."""
    def learner(micro_batch):
        run = resolve(RunConfig(method=method, preset="smoke", codebook_size=16, method_options=options))
        torch.manual_seed(0)
        step = TrainStep(run.with_train(micro_batch=micro_batch), torch.device("cpu"))
        step.opt_g.step = lambda: None
        return run, step

    (run, whole), (_, split) = learner(None), learner(4)
    r = run.model.resolution
    x = torch.rand(run.train.batch_size, 3, r, r, generator=torch.Generator().manual_seed(1)) * 2 - 1
    before = {k: v.clone() for k, v in whole.model.quantizer.state_dict().items()}
    _, idx_whole = whole(x, 0)
    _, idx_split = split(x, 0)
    assert torch.equal(idx_whole, idx_split)  # the second micro-batch saw the codes the first one saw
    after_whole, after_split = whole.model.quantizer.state_dict(), split.model.quantizer.state_dict()
    for key in before:
        assert not torch.equal(after_whole[key], before[key]), key  # the step updated it
        torch.testing.assert_close(after_split[key], after_whole[key], rtol=1e-6, atol=1e-6, msg=key)
