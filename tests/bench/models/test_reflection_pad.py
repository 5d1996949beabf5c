"""Reflection padding by index selection (the deterministic mode's replacement for nn.ReflectionPad2d
on CUDA) gives the same values and gradients, and replaces every reflection pad of ST-LPIPS."""
import pytest
import torch
from torch import nn

from bench.models.reflection_pad import IndexReflectionPad2d, deterministic_padding


@pytest.mark.parametrize("padding", [(1, 1, 1, 1), (0, 1, 0, 1), (2, 1, 0, 3), (3, 3, 3, 3)])
def test_index_padding_equals_reflection_padding(padding):
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    want, got = nn.ReflectionPad2d(padding)(x), IndexReflectionPad2d(padding)(x)
    assert torch.equal(got, want)
    g = torch.randn_like(want)
    torch.testing.assert_close(torch.autograd.grad(got, x, g)[0], torch.autograd.grad(want, x, g)[0],
                               rtol=0, atol=1e-12)


def test_index_padding_refuses_what_reflection_padding_refuses():
    with pytest.raises(RuntimeError):
        IndexReflectionPad2d((4, 4, 0, 0))(torch.randn(1, 1, 3, 4))


def test_every_reflection_pad_is_replaced_in_place_and_the_output_is_unchanged():
    net = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(3, 4, 3),
                        nn.Sequential(nn.ReflectionPad2d((0, 1, 0, 1)), nn.AvgPool2d(2)))
    x = torch.randn(2, 3, 8, 8)
    before, keys = net(x), set(net.state_dict())
    assert deterministic_padding(net) == 2
    assert not any(isinstance(m, nn.ReflectionPad2d) for m in net.modules())
    assert set(net.state_dict()) == keys and torch.equal(net(x), before)


def test_st_lpips_has_no_reflection_pad_left():
    stlpips = pytest.importorskip("stlpips_pytorch")
    from bench.evaluation.metrics.lpips import load_network

    pn = load_network("alex", "cpu", prefer="st-lpips")  # the training loss's VGG pads the same way (slower to load)
    pads = sum(isinstance(m, nn.ReflectionPad2d) for m in pn.module.modules())
    assert pads > 0, f"stlpips {stlpips.__name__} no longer pads by reflection: update bench/models/reflection_pad.py"
    x, y = torch.rand(2, 2, 3, 32, 32).mul(2).sub(1)
    before = pn.module(x, y)
    assert deterministic_padding(pn.module) == pads
    torch.testing.assert_close(pn.module(x, y), before, rtol=0, atol=0)


@pytest.mark.parametrize("device, deterministic, replaced", [("cuda", True, True), ("cuda", False, False),
                                                             ("cpu", True, False)])
def test_the_training_loss_pads_deterministically_on_cuda_in_the_deterministic_mode(monkeypatch, device,
                                                                                     deterministic, replaced):
    from bench.evaluation.metrics.lpips import PerceptualNet
    from bench.models import perceptual

    net = nn.Sequential(nn.ReflectionPad2d(1))
    monkeypatch.setattr(perceptual, "load_network", lambda name, dev: PerceptualNet(net, "st-lpips-vgg", name))
    monkeypatch.setattr(torch, "are_deterministic_algorithms_enabled", lambda: deterministic)
    module, name = perceptual.load_perceptual(torch.device(device))
    assert name == "st-lpips-vgg" and isinstance(module[0], IndexReflectionPad2d) == replaced
