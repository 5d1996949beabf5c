"""Tokenising, tagging and filtering on a hand-made corpus with known words, counts and edges."""
import json
import random

import nltk
import pytest

from bench.core.errors import UserError
from codebooks import pos
from codebooks.corpus import read_cupl

from . import corpus_fixture as fx


@pytest.fixture(scope="module")
def tagger():
    return pos.FastTagger()


@pytest.fixture(scope="module")
def counts(tagger):
    return pos.count_words(fx.captions(), pos.PosRules(), pos.resolve_lemmatizer("auto"), tagger.tag)


def test_tokenizer_fast_path_matches_nltk_word_tokenize():
    cases = ["A red car is parked on the street.", "a small, bright orange fish", "It cannot fly.",
             "The dog's tail is 1,000 cm long.", "two  spaces here.", "Hello. World.", "a gonna b", "(brackets) ok"]
    caps = random.Random(0).sample(read_cupl(), 1500)
    for c in cases + caps:
        assert pos.tokenize(c) == nltk.word_tokenize(c.lower().strip(), preserve_line=True), c


def test_fast_tagger_gives_nltk_pos_tag_tags(tagger):
    caps = random.Random(1).sample(read_cupl(), 800) + fx.captions()
    for c in caps:
        tokens = pos.tokenize(c)
        assert tagger.tag(tokens) == [t for _, t in nltk.pos_tag(tokens)], c


def test_known_adjectives_nouns_counts_and_edges(counts):
    vocab = pos.filter_counts(counts, pos.PosRules())
    assert list(zip(vocab.adjectives, vocab.adj_counts)) == fx.ADJECTIVES
    assert list(zip(vocab.nouns, vocab.noun_counts)) == fx.NOUNS
    edges = [(vocab.adjectives[a], vocab.nouns[n], c) for a, n, c in vocab.edges]
    assert edges == fx.EDGES


def test_raw_counts_include_rare_words_and_lemmatise_nouns(counts):
    assert counts.adjectives["tall"] == 3 and counts.adjectives["green"] == 3
    assert counts.nouns["apple"] == 3 and "apples" not in counts.nouns  # lemmatised
    assert counts.nouns["dog"] == 13 and "dogs" not in counts.nouns
    assert counts.edges[("green", "apple")] == 3


def test_threshold_is_more_than_min_count(counts):
    vocab = pos.filter_counts(counts, pos.PosRules(min_count=11))  # drops the words seen exactly 11 times
    assert vocab.adjectives == ["big", "small", "red"]
    assert vocab.nouns == ["ball", "dog", "car", "street"]
    assert len(vocab.edges) == 3
    vocab = pos.filter_counts(counts, pos.PosRules(min_count=2))
    assert "tall" in vocab.adjectives and "apple" in vocab.nouns


def test_no_lemmatising_keeps_plurals(tagger):
    rules = pos.PosRules(lemmatize_nouns=False)
    c = pos.count_words(fx.captions(), rules, "lemminflect", tagger.tag)
    assert c.nouns["dogs"] == 13 and "dog" not in c.nouns


def test_tag_sets_are_parameters(tagger):
    rules = pos.PosRules(adj_tags=("JJ", "CD"))  # "two" is CD
    c = pos.count_words(fx.captions(), rules, "lemminflect", tagger.tag)
    assert c.adjectives["two"] == 13


def test_stopwords_and_pattern(counts):
    counts.adjectives["other"] = 50
    counts.adjectives["3d"] = 50
    try:
        kept = pos.filter_counts(counts, pos.PosRules()).adjectives
        assert "other" in kept and "3d" not in kept
        assert "other" not in pos.filter_counts(counts, pos.PosRules(remove_stopwords=True)).adjectives
    finally:
        del counts.adjectives["other"], counts.adjectives["3d"]


def test_top_k_keeps_the_ratio(counts):
    vocab = pos.filter_counts(counts, pos.PosRules(top_k=4))  # 5 adj : 6 nouns -> 2 : 2
    assert vocab.adjectives == ["big", "small"] and vocab.nouns == ["ball", "dog"]
    assert [(vocab.adjectives[a], vocab.nouns[n]) for a, n, _ in vocab.edges] == [("big", "ball"), ("small", "dog")]


def test_split_sizes():
    assert pos.split_sizes(256, 986, 2558) == (71, 185)
    assert pos.split_sizes(11, 5, 6) == (5, 6)
    assert pos.split_sizes(2, 1, 1000) == (1, 1)  # both kinds present
    assert pos.split_sizes(10, 9, 1) == (9, 1)
    with pytest.raises(UserError, match="larger than the prior's vocabulary"):
        pos.split_sizes(12, 5, 6)


def test_tagger_data_converted_from_textblob(tmp_path):
    folder = pos.build_tagger_data(tmp_path)
    classes = json.loads((folder / "averaged_perceptron_tagger_eng.classes.json").read_text())
    assert "JJ" in classes and "NN" in classes and classes == sorted(classes)
    from nltk.tag.perceptron import PerceptronTagger

    nltk.data.path.append(str(tmp_path))
    try:
        t = PerceptronTagger(load=False)
        t.load_from_json(loc=str(folder))
        assert [tag for _, tag in t.tag(["a", "red", "car"])] == ["DT", "JJ", "NN"]
    finally:
        nltk.data.path.remove(str(tmp_path))


def test_tagger_source_is_recorded():
    src = pos.tagger_source()
    assert src["fingerprint"] and src["name"]
    from pathlib import Path

    if "official" not in src["name"]:  # then ours, built into the vqbench cache from textblob-aptagger
        assert "textblob-aptagger" in src["name"]
        assert (Path(src["path"]) / "averaged_perceptron_tagger_eng.weights.json").is_file()
