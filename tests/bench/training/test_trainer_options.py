"""Trainer execution options: optional torch.compile (in place, checkpoints unchanged) and the
channels-last layout on GPUs."""
import pytest
import torch

from bench.runs.config import RunConfig, resolve
from bench.training.step import TrainStep


def _resolved():
    return resolve(RunConfig(method="vqgan", preset="smoke", codebook_size=16))


def test_compile_wraps_encoder_decoder_and_discriminator_in_place(monkeypatch):
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: compiled.append(type(self).__name__))
    plain = TrainStep(_resolved(), torch.device("cpu"))
    assert compiled == [] and not plain.compiled
    learner = TrainStep(_resolved(), torch.device("cpu"), compile=True)
    assert compiled == ["Encoder", "Decoder", "PatchDiscriminator"] and learner.compiled
    assert learner.model.state_dict().keys() == plain.model.state_dict().keys()


def test_cpu_keeps_the_default_layout_and_steps():
    learner = TrainStep(_resolved(), torch.device("cpu"))
    assert learner.memory_format == torch.contiguous_format
    r = _resolved().model.resolution
    terms, indices = learner(torch.rand(2, 3, r, r) * 2 - 1, 0)
    assert torch.isfinite(terms["loss"]) and indices.shape[0] == 2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_uses_channels_last_and_bf16():
    learner = TrainStep(_resolved(), torch.device("cuda"))
    conv = next(m for m in learner.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and learner.use_bf16
    r = _resolved().model.resolution
    terms, _ = learner(torch.rand(2, 3, r, r, device="cuda") * 2 - 1, 0)
    assert torch.isfinite(terms["loss"])


@pytest.mark.slow  # compiling with inductor takes about a minute on 2 cores
def test_compiled_steps_match_eager_ones():
    r = _resolved().model.resolution
    torch.manual_seed(0)
    x = torch.rand(2, 3, r, r) * 2 - 1
    losses = {}
    for compile in (False, True):
        torch.manual_seed(0)
        learner = TrainStep(_resolved(), torch.device("cpu"), compile=compile)
        losses[compile] = [float(learner(x, step)[0]["loss"]) for step in range(2)]
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)
