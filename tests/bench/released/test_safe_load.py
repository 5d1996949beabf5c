"""A checkpoint is untrusted input: nothing in it runs, and what is refused is said in one line."""
from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import pytest
import torch

from bench.core.errors import UserError
from bench.released import load_released
from bench.released.safe_load import StandIn, read_checkpoint, tensor_dict
from tests.bench.released import oracles


def write_marker(path: str) -> str:
    """What the hostile pickle would call while being read."""
    Path(path).write_text("code from the checkpoint ran")
    return path


class Hostile:
    """Unpickling this calls write_marker(marker): the classic code-execution pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (write_marker, (self.marker,))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_hostile_pickle_runs_nothing_and_is_refused_with_the_reason(tmp_path, writer):
    marker = tmp_path / "marker.txt"
    ckpt = tmp_path / "last.ckpt"
    payload = {"state_dict": {"encoder.conv_in.weight": torch.zeros(1)}, "hparams": Hostile(marker)}
    if writer == "torch.save":
        torch.save(payload, ckpt)
    else:
        with ckpt.open("wb") as f:
            pickle.dump(payload, f)
    oracles.write_yaml(tmp_path / "model.yaml", oracles.taming_config(oracles.ddconfig(), 16, 8))
    with pytest.raises(UserError) as err:
        load_released("taming", ckpt, tmp_path / "model.yaml")
    message = str(err.value)
    assert not marker.exists()
    assert "\n" not in message
    assert message.startswith(f"refused checkpoint {ckpt}")
    assert "arbitrary code" in message and "weights_only=False" in message and "state_dict" in message
    assert "test_safe_load.write_marker" in message  # found by a static scan of the opcodes


def test_lightning_bookkeeping_is_read_as_inert_stand_ins(tmp_path):
    with oracles.named_class("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint") as cls:
        import numpy as np

        torch.save({"callbacks": {cls: {"score": np.float64(0.5)}}, "args": argparse.Namespace(image_size=384),
                    "state_dict": {"w": torch.ones(2)}}, tmp_path / "a.ckpt")
    ckpt = read_checkpoint(tmp_path / "a.ckpt")
    assert set(ckpt.stand_ins) >= {"pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint", "argparse.Namespace",
                                   "numpy._core.multiarray.scalar", "numpy.dtype"}
    args = ckpt.content["args"]
    assert isinstance(args, StandIn) and args.state == {"image_size": 384}  # data kept, argparse never called
    assert torch.equal(ckpt.content["state_dict"]["w"], torch.ones(2))


def test_a_stand_in_where_a_weight_should_be_is_refused_by_key(tmp_path):
    torch.save({"state_dict": {"w": torch.ones(2), "bad": argparse.Namespace(a=1)}}, tmp_path / "a.ckpt")
    ckpt = read_checkpoint(tmp_path / "a.ckpt")
    with pytest.raises(UserError, match=r"key 'bad' in entry 'state_dict' holds a <stand-in for argparse.Namespace>"):
        tensor_dict(ckpt.content["state_dict"], ckpt.path, "entry 'state_dict'")


def test_empty_truncated_and_missing_files(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(UserError, match="empty file"):
        read_checkpoint(tmp_path / "empty.pt")
    torch.save({"w": torch.ones(100)}, tmp_path / "full.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "full.pt").read_bytes()[:200])
    with pytest.raises(UserError, match="cannot be read"):
        read_checkpoint(tmp_path / "cut.pt")
    with pytest.raises(UserError, match="does not exist"):
        read_checkpoint(tmp_path / "absent.pt")


def test_safetensors_files_are_read_without_unpickling(tmp_path):
    from safetensors.torch import save_file

    save_file({"a": torch.arange(3.0)}, str(tmp_path / "w.safetensors"), metadata={"k": "v"})
    ckpt = read_checkpoint(tmp_path / "w.safetensors")
    assert ckpt.format == "safetensors" and ckpt.metadata == {"k": "v"}
    assert torch.equal(ckpt.content["a"], torch.arange(3.0))
