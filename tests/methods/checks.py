"""Checks shared by the per-method tests: a checkpoint round trip through safetensors, and a short
training run on the embedded dataset whose reconstruction loss must fall."""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import datasets
import methods
from bench.core.images import to_float
from bench.runs.config import RunConfig, resolve
from bench.training.loop import train
from bench.training.step import build_model


def latent(q: methods.Quantizer, seed: int = 0, b: int = 2, hw: int = 4, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, q.latent_channels, hw, hw, generator=g) * scale


def assert_checkpoint_restores_state(name: str, k: int = 64, dim: int = 8, steps: int = 3, **options) -> None:
    """Train a few forward passes (stateful methods update buffers), save the state dict as the
    trainer does (safetensors), load it into a freshly built quantizer with other random weights,
    and require the same outputs from then on, in training and in eval."""
    torch.manual_seed(0)
    q = methods.create(name, k, dim, **options).train()
    for s in range(steps):
        q(latent(q, seed=s, scale=0.3))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "q.safetensors"
        save_file({key: v.detach().contiguous() for key, v in q.state_dict().items()}, str(path))
        torch.manual_seed(123)
        restored = methods.create(name, k, dim, **options).train()
        restored.load_state_dict(load_file(str(path)))
    for key, value in q.state_dict().items():
        assert torch.equal(value, restored.state_dict()[key]), key
    z = latent(q, seed=99, scale=0.3)
    torch.manual_seed(7)
    a = q(z)
    torch.manual_seed(7)
    b = restored(z)
    assert torch.equal(a.indices, b.indices)
    torch.testing.assert_close(a.z_q, b.z_q, rtol=0, atol=0)
    q.eval(), restored.eval()
    with torch.no_grad():
        torch.testing.assert_close(q(z).z_q, restored(z).z_q, rtol=0, atol=0)


def assert_training_reduces_reconstruction_loss(name: str, k: int = 64, steps: int = 60, factor: float = 0.9,
                                                **options) -> dict:
    """Train the cpu-tiny autoencoder for `steps` steps on the embedded `photos` dataset through
    bench.training, and require the L1 reconstruction error on 64 held-out tiles to fall below
    `factor` times its value before training."""
    resolved = resolve(RunConfig(method=name, codebook_size=k, steps=steps, method_options=options))
    res = resolved.model.resolution
    train_set = datasets.create("photos", "train", res)
    val = datasets.create("photos", "val", res)
    x = to_float(torch.stack([val[i] for i in range(64)]))
    torch.manual_seed(resolved.seed)  # train() seeds the same way, so this is its initial model
    initial = build_model(resolved).eval()
    with torch.no_grad():
        before = float((initial(x)[0] - x).abs().mean())
    with tempfile.TemporaryDirectory() as d:
        result = train(resolved, train_set, Path(d), torch.device("cpu"), progress=False)
    assert result.steps == steps
    model = result.model.eval()
    with torch.no_grad():
        xrec, out = model(x)
        after = float((xrec - x).abs().mean())
        # decode_indices is the decoder's view of the codes: it must give the same reconstruction.
        torch.testing.assert_close(model.decode_indices(out.indices), xrec, rtol=1e-4, atol=1e-4)
    assert after < factor * before, f"{name}: L1 {before:.4f} -> {after:.4f} after {steps} steps"
    return {"before": before, "after": after, "indices": out.indices, "model": model}
