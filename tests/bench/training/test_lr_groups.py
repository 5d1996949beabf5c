"""Quantizer-declared learning-rate groups (`Quantizer.learning_rate_groups`, bench.training.lr_groups):
no group changes nothing; declared groups get their own optimizer group, set from the step before
every optimizer step, and logged."""
import itertools

import pytest
import torch
from torch import nn

from bench.runs.config import RunConfig, resolve
from bench.training import lr_groups
from bench.training.step import TrainStep
from methods.base import LearningRateGroup


def _learner(method: str, **options) -> TrainStep:
    run = resolve(RunConfig(method=method, preset="smoke", codebook_size=16, steps=10, method_options=options))
    torch.manual_seed(0)
    return TrainStep(run, torch.device("cpu"))


def test_a_method_without_groups_keeps_one_group_of_every_parameter():
    learner = _learner("vqgan")
    (group,) = learner.opt_g.param_groups
    assert [id(p) for p in group["params"]] == [id(p) for p in learner.model.parameters()]
    assert learner.scheduled_rates() == {}


def test_vqbridge_anneals_its_own_group_and_leaves_the_rest_at_the_run_rate():
    learner = _learner("vqbridge", codes_per_token=4)
    rest, bridge = learner.opt_g.param_groups
    quantizer = learner.model.quantizer
    assert {id(p) for p in bridge["params"]} == {id(p) for p in quantizer.parameters()}
    assert len(rest["params"]) + len(bridge["params"]) == len(list(learner.model.parameters()))
    r = 16  # the smoke preset's resolution
    x = torch.rand(2, 3, r, r) * 2 - 1
    rates = []
    for step in range(10):
        learner(x, step)
        rates.append(learner.scheduled_rates()["lr_vqbridge"] / learner.lr)
        assert rest["lr"] == learner.lr
    # 10 steps: 1 of warm-up from 0.005, full rate while under 30% of the other 9, then linear to 0.01
    assert rates[0] == pytest.approx(0.005) and rates[1] == 1.0 and rates[3] == 1.0
    assert rates[-1] == pytest.approx(0.01) and all(a >= b for a, b in itertools.pairwise(rates[1:]))


def test_groups_must_hold_the_models_parameters_once():
    model = nn.Linear(2, 2)
    stranger = nn.Parameter(torch.zeros(1))
    with pytest.raises(ValueError, match="not the model's"):
        lr_groups.generator_groups(model, (LearningRateGroup("x", (stranger,), lambda s, t: 1.0),), 1e-3, 10)
    twice = (LearningRateGroup("a", (model.weight,), lambda s, t: 1.0),
             LearningRateGroup("b", (model.weight,), lambda s, t: 1.0))
    with pytest.raises(ValueError, match="repeats a parameter"):
        lr_groups.generator_groups(model, twice, 1e-3, 10)


def test_a_resumed_vqbridge_run_trains_at_the_rates_and_to_the_weights_of_an_uninterrupted_one(tmp_path):
    """The checkpoint holds two generator groups and the rate of its last step; the resumed run sets
    each step's scheduled rate again, so 2 + 2 steps across a checkpoint equal 4 straight (bit for bit)."""
    from bench.training.checkpoint import load_checkpoint, save_checkpoint

    torch.manual_seed(5)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    straight = _learner("vqbridge", codes_per_token=4)
    for step in range(4):
        straight(x, step)
    first = _learner("vqbridge", codes_per_token=4)
    for step in range(2):
        first(x, step)
    save_checkpoint(tmp_path / "ckpt.safetensors", 2, first.modules, first.optimizers)
    resumed = _learner("vqbridge", codes_per_token=4)
    assert load_checkpoint(tmp_path / "ckpt.safetensors", resumed.modules, resumed.optimizers, torch.device("cpu")) == 2
    for step in range(2, 4):
        resumed(x, step)
    assert resumed.scheduled_rates() == straight.scheduled_rates()
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
