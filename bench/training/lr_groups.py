"""The generator's optimizer parameter groups: the model at the run's learning rate, plus the groups a
quantizer declares with a schedule of its own (`Quantizer.learning_rate_groups`, VQBridge's annealing).

A method that declares none gets the single group every run had before this hook existed (the same
optimizer state dict, so its checkpoints and results are unchanged). Declared groups are set to their
scheduled rate before each optimizer step from the step number alone, so a run resumed from a
checkpoint trains at the rates an uninterrupted run had (the rate saved in the checkpoint is overwritten).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from methods.base import LearningRateGroup


def generator_groups(model: nn.Module, declared: tuple[LearningRateGroup, ...], lr: float,
                     total_steps: int) -> list[dict[str, Any]] | list[nn.Parameter]:
    """What the generator's optimizer is built from: the model's parameters as one list when no group is
    declared, else one group of every undeclared parameter followed by the declared groups in order."""
    if not declared:
        return list(model.parameters())
    owned = {id(p): p for p in model.parameters()}
    claimed: set[int] = set()
    for group in declared:
        for p in group.parameters:
            if id(p) not in owned:
                raise ValueError(f"learning-rate group {group.name!r} holds a parameter that is not the model's")
            if id(p) in claimed:
                raise ValueError(f"learning-rate group {group.name!r} repeats a parameter of another group")
            claimed.add(id(p))
    rest = [p for p in model.parameters() if id(p) not in claimed]
    return [{"params": rest}] + [{"params": list(g.parameters), "lr": lr * g.factor(0, total_steps)} for g in declared]


def set_scheduled_rates(optimizer: torch.optim.Optimizer, declared: tuple[LearningRateGroup, ...], lr: float,
                        step: int, total_steps: int) -> None:
    """Before optimizer step `step`: each declared group at its scheduled rate (groups 1.. of `optimizer`)."""
    for param_group, group in zip(optimizer.param_groups[1:], declared):
        param_group["lr"] = lr * group.factor(step, total_steps)


def scheduled_rates(optimizer: torch.optim.Optimizer, declared: tuple[LearningRateGroup, ...]) -> dict[str, float]:
    """The declared groups' current rates for the train log, as {"lr_<name>": rate}; empty when none."""
    return {f"lr_{g.name}": float(pg["lr"]) for pg, g in zip(optimizer.param_groups[1:], declared)}
