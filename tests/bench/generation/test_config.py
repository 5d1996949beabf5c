"""Prior presets and overrides: names and types checked, impossible values refused, ids stable."""
import pytest

from bench.core.errors import UserError
from bench.generation import folder
from bench.generation.config import PRIOR_PRESETS, prior_preset


def test_presets_match_the_tokenizer_presets_and_are_valid():
    from bench.runs.presets import PRESETS

    assert set(PRIOR_PRESETS) == set(PRESETS)
    for cfg in PRIOR_PRESETS.values():
        cfg.check()
    paper = prior_preset("paper")  # taming's faceshq / drin transformer sizes and its sampling
    assert (paper.model.n_layer, paper.model.n_head, paper.model.n_embd) == (24, 16, 1024)
    assert paper.sampling.top_k == 250 and paper.eval.n_samples == 50_000
    smoke = prior_preset("smoke").eval  # Inception on a few dozen images: gFID beside an rFID, still quick
    assert smoke.inception_metrics and (smoke.n_samples, smoke.reference_images, smoke.tokenizer_rfid_images) == (16, 32, 16)
    assert all(p.eval.tokenizer_rfid_images == 0 for n, p in PRIOR_PRESETS.items() if n != "smoke")
    with pytest.raises(UserError, match="tokenizer_rfid_images"):
        prior_preset("smoke").override({"eval.tokenizer_rfid_images": 2})  # an interval needs 3 images


def test_override_types_and_names():
    cfg = prior_preset("smoke").override({"train.steps": "7", "sampling.top_p": 0.9, "seed": 3})
    assert cfg.train.steps == 7 and cfg.sampling.top_p == 0.9 and cfg.seed == 3
    assert cfg.overrides == {"train.steps": "7", "sampling.top_p": 0.9, "seed": 3}
    assert prior_preset("smoke").train.steps == 20  # presets are not changed
    with pytest.raises(UserError, match="did you mean 'steps'"):
        prior_preset("smoke").override({"train.stepz": 5})
    with pytest.raises(UserError, match="unknown prior option"):
        prior_preset("smoke").override({"trian.steps": 5})
    with pytest.raises(UserError, match="must be an integer"):
        prior_preset("smoke").override({"train.steps": "many"})
    with pytest.raises(UserError, match="divisible"):
        prior_preset("smoke").override({"model.n_head": 3})
    with pytest.raises(UserError, match="top_p"):
        prior_preset("smoke").override({"sampling.top_p": 0})
    with pytest.raises(UserError, match="unknown prior preset"):
        prior_preset("papr")


def test_prior_id_is_stable_and_sensitive():
    a = prior_preset("smoke")
    ida = folder.prior_id("tok-1", a.preset, a.seed, a.to_dict())
    assert ida == folder.prior_id("tok-1", a.preset, a.seed, prior_preset("smoke").to_dict())
    assert ida.startswith("tok-1--smoke-s0-")
    b = a.override({"sampling.temperature": 0.9})
    assert folder.prior_id("tok-1", b.preset, b.seed, b.to_dict()) != ida
    assert folder.prior_id("tok-2", a.preset, a.seed, a.to_dict()) != ida
