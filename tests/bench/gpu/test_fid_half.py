"""bench/gpu/fid_half.py: the FID weights stored as float16 load as float32 and give the float32 file's
features to within the rounding of the weights."""
import os

import pytest
import torch

from bench.gpu import fid_half


def test_to_half_rounds_floats_keeps_integers_and_stores_nan_layers_as_one_element(tmp_path):
    state = {"conv.weight": torch.randn(4, 3, 3, 3), "bn.num_batches_tracked": torch.tensor(0),
             "fc.weight": torch.full((1008, 2048), float("nan")), "fc.bias": torch.full((1008,), float("nan"))}
    half = fid_half.to_half(state)
    assert half["conv.weight"].dtype == torch.float16 and torch.equal(half["conv.weight"], state["conv.weight"].half())
    assert half["bn.num_batches_tracked"].dtype == torch.int64
    assert half["fc.weight"].shape == (1008, 2048) and torch.isnan(half["fc.weight"]).all()
    torch.save(half, tmp_path / "half.pth")
    assert os.path.getsize(tmp_path / "half.pth") < 20_000  # the NaN classifier takes no room
    loaded = torch.load(tmp_path / "half.pth", weights_only=True)
    target = torch.nn.Linear(2048, 1008)
    target.load_state_dict({"weight": loaded["fc.weight"], "bias": loaded["fc.bias"]})  # copied as float32
    assert target.weight.dtype == torch.float32 and torch.isnan(target.weight).all()


def test_a_value_beyond_float16_is_refused():
    with pytest.raises(ValueError, match="overflows float16"):
        fid_half.to_half({"w": torch.tensor([1e6])})


@pytest.mark.slow  # derives the FID weights on a cold cache (over a minute) and runs Inception four times
def test_half_weights_give_the_float32_features_to_weight_rounding(tmp_path):
    from bench.evaluation.metrics import fid_weights

    full = fid_weights.derive().path
    fid_half.save_half(full, tmp_path / "half.pth")
    difference = fid_half.relative_feature_difference(full, tmp_path / "half.pth")
    assert 0 < difference <= fid_half.RELATIVE_TOL  # not equal (the weights were rounded), but within rounding
