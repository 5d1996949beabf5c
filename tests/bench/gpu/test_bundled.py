"""bench/gpu/bundled.py: the bundle's VQCT prior becomes VQCT's default prior in this process, without
the cache key (which needs the language model that does not travel)."""
import json

import pytest
import torch

from bench.core.errors import UserError
from bench.gpu import bundled


@pytest.fixture
def clean_memo():
    from codebooks import build

    build.clear_memo()
    yield
    build.clear_memo()


def _bundle_with_prior(root, **meta_changes):
    from codebooks.prior import Prior
    from methods.vqct import VQCTOptions

    rules = json.loads(json.dumps(__import__("dataclasses").asdict(VQCTOptions().build_config().rules)))
    rules["lemmatizer"] = "lemminflect"
    meta = {"key": "somekey", "corpus": {"spec": "cupl"}, "encoder": {"kind": "minilm"}, "rules": rules, **meta_changes}
    g = torch.Generator().manual_seed(0)
    prior = Prior(["red", "small", "old"], [30, 20, 12], ["dog", "car", "tree", "cup"], [40, 33, 25, 11],
                  torch.randn(3, 8, generator=g), torch.randn(4, 8, generator=g), [(0, 0, 5), (1, 1, 3), (2, 2, 2)], meta)
    prior.save(root / bundled.PRIOR_FOLDER / "somekey")
    return root


def test_the_bundled_prior_serves_vqct_without_a_key(tmp_path, monkeypatch, clean_memo):
    from codebooks import build
    import methods

    bundle = _bundle_with_prior(tmp_path)
    monkeypatch.setenv(bundled.BUNDLE_ENV, str(bundle))
    monkeypatch.setattr(build, "resolve", lambda config: (_ for _ in ()).throw(AssertionError("key computed")))
    prior = bundled.use_bundled_prior()
    assert prior.n_adj == 3 and prior.n_noun == 4
    q = methods.create("vqct", 6, 4)  # check() and the quantizer read the prior through build_prior
    assert q.codebook_size == 6


def test_a_prior_for_other_options_is_refused(tmp_path, clean_memo):
    bundle = _bundle_with_prior(tmp_path, encoder={"kind": "glove"})
    with pytest.raises(UserError, match="rebuild the bundle"):
        bundled.use_bundled_prior(bundle)


def test_outside_the_check_nothing_happens(monkeypatch, clean_memo):
    monkeypatch.delenv(bundled.BUNDLE_ENV, raising=False)
    assert bundled.use_bundled_prior() is None


def test_a_bundle_without_one_prior_is_refused(tmp_path):
    (tmp_path / bundled.PRIOR_FOLDER).mkdir(parents=True)
    with pytest.raises(UserError, match="holds 0"):
        bundled.use_bundled_prior(tmp_path)
