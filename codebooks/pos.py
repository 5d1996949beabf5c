"""Part-of-speech filtering: captions -> adjective and noun counts and adjective-noun edges.

The rules follow VQCT's public code: lower-cased captions, NLTK tokenisation, NLTK's Penn Treebank
tagger, nouns (NN, NNS, NNP, NNPS) lemmatised, adjectives (JJ) kept as they are, words seen more than
10 times kept, an edge whenever an adjective is directly followed by a noun. Every rule is a field
of `PosRules`.

Tagger data: NLTK's official `averaged_perceptron_tagger_eng` when it is installed anywhere on
`nltk.data.path`; otherwise the same averaged-perceptron model that the official data was ported
from, converted once from the `textblob-aptagger` wheel into NLTK's JSON layout under the vqbench
cache. Either way the tags come from NLTK's `PerceptronTagger`; `FastTagger` only memoises its
per-token decision on everything that decision reads, and scores with one matrix, which gives the
same tags as `nltk.pos_tag` (tested) several times faster.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import pickle
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from bench.core.atomic import write_json_atomic
from bench.core.errors import UserError
from bench.core.paths import cache_dir

TAGGER_RESOURCE = "taggers/averaged_perceptron_tagger_eng/"
TAGGER_FILES = ("weights", "tagdict", "classes")
TEXTBLOB_PICKLE = "trontagger-0.1.0.pickle"


@dataclass(frozen=True)
class PosRules:
    """Which words become codes. Defaults are the paper's (its public code's) values."""

    noun_tags: tuple[str, ...] = ("NN", "NNS", "NNP", "NNPS")
    adj_tags: tuple[str, ...] = ("JJ",)  # the paper keeps JJ only, not JJR/JJS
    lemmatize_nouns: bool = True  # "dogs" and "dog" are one code
    lemmatize_adjectives: bool = False  # the paper does not lemmatise adjectives
    lemmatizer: str = "auto"  # "auto" (WordNet when its NLTK data is present, else lemminflect), "wordnet", "lemminflect"
    min_count: int = 10  # keep words seen MORE than this many times (the paper's threshold)
    top_k: int | None = None  # then keep only the top_k most frequent words, split in the vocabulary's ratio
    remove_stopwords: bool = False  # drop scikit-learn's English stop words (the paper does not)
    # Tagger mistakes on punctuation, numbers and single letters would otherwise become codes.
    word_pattern: str = r"[a-z]+(?:-[a-z]+)*"
    min_length: int = 2

    def counting_key(self) -> dict[str, object]:
        """The fields that the raw counts depend on (the rest are applied after counting)."""
        return {"noun_tags": list(self.noun_tags), "adj_tags": list(self.adj_tags),
                "lemmatize_nouns": self.lemmatize_nouns, "lemmatize_adjectives": self.lemmatize_adjectives}


# ----------------------------------------------------------------------------------------------
# Tokenising

# A caption of lower-case words, single spaces and commas, ending in an optional full stop: NLTK's
# Treebank tokenizer splits it into exactly its words, its commas and the final stop (tested against
# word_tokenize). Most captions are like this, and str.split is 50 times faster than the regexes.
_PLAIN = re.compile(r"[a-z]+(?:,? [a-z]+)*\.?")
_TREEBANK_SPECIAL = re.compile(r"\b(?:cannot|d'ye|gimme|gonna|gotta|lemme|more'n|wanna|whaddya|whatcha)\b")


def tokenize(caption: str) -> list[str]:
    """Lower-cased NLTK Treebank tokens (`nltk.word_tokenize(s, preserve_line=True)`)."""
    s = caption.lower().strip()
    if _PLAIN.fullmatch(s) and not _TREEBANK_SPECIAL.search(s):
        body, end = (s[:-1], ["."]) if s.endswith(".") else (s, [])
        return body.replace(",", " ,").split() + end
    import nltk

    return nltk.word_tokenize(s, preserve_line=True)


# ----------------------------------------------------------------------------------------------
# Tagger data


def _textblob_pickle() -> Path:
    # Located, not imported: textblob_aptagger's own import needs an old TextBlob.
    spec = importlib.util.find_spec("textblob_aptagger")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("no NLTK tagger data: install textblob-aptagger==0.2.0 (or run nltk.download("
                        "'averaged_perceptron_tagger_eng'))")
    return Path(list(spec.submodule_search_locations)[0]) / TEXTBLOB_PICKLE


def built_nltk_data_dir() -> Path:
    return cache_dir("nltk_data")


def build_tagger_data(root: Path) -> Path:
    """Write textblob-aptagger's perceptron as NLTK's three JSON files under root; returns the folder."""
    folder = root / TAGGER_RESOURCE
    if all((folder / f"averaged_perceptron_tagger_eng.{n}.json").is_file() for n in TAGGER_FILES):
        return folder
    with open(_textblob_pickle(), "rb") as f:
        weights, tagdict, classes = pickle.load(f, encoding="latin1")
    folder.mkdir(parents=True, exist_ok=True)
    for name, obj in (("weights", weights), ("tagdict", tagdict), ("classes", sorted(classes))):
        final = folder / f"averaged_perceptron_tagger_eng.{name}.json"
        write_json_atomic(final, obj)  # parallel builders never see half a file
    return folder


def nltk_data_paths() -> list[str]:
    """Where NLTK looks for data: its live search path if NLTK is imported, else the same defaults
    NLTK would use ($NLTK_DATA, ~/nltk_data, <prefix>/..., /usr/...). Importing NLTK takes seconds,
    so loading a cached prior must not need it."""
    if "nltk" in sys.modules:
        import nltk

        return [str(p) for p in nltk.data.path]
    paths = [d for d in os.environ.get("NLTK_DATA", "").split(os.pathsep) if d]
    paths.append(os.path.expanduser("~/nltk_data"))
    paths += [os.path.join(sys.prefix, *parts) for parts in (("nltk_data",), ("share", "nltk_data"), ("lib", "nltk_data"))]
    paths += ["/usr/share/nltk_data", "/usr/local/share/nltk_data", "/usr/lib/nltk_data", "/usr/local/lib/nltk_data"]
    return paths


def _find_data(resource: str, exclude: Path | None = None) -> Path | None:
    """The first `resource` (a folder, or its .zip) on NLTK's search path, like nltk.data.find."""
    for root in nltk_data_paths():
        if exclude is not None and Path(root) == exclude:
            continue
        for candidate in (Path(root) / resource, Path(root) / (resource.rstrip("/") + ".zip")):
            if candidate.exists():
                return candidate
    return None


@functools.lru_cache(maxsize=1)
def tagger_source() -> dict[str, str]:
    """Which tagger data `nltk.pos_tag` will use: the official files if present, else ours (built now
    if needed). Our folder goes at the end of nltk.data.path, after every official location."""
    ours = built_nltk_data_dir()
    found = _find_data(TAGGER_RESOURCE, exclude=ours)
    if found is not None:
        return {"name": "nltk averaged_perceptron_tagger_eng (official data)", "path": str(found),
                "fingerprint": _files_fingerprint(found)}
    folder = build_tagger_data(ours)
    pickle_path = _textblob_pickle()
    return {"name": "nltk averaged perceptron, data converted from textblob-aptagger==0.2.0 " + TEXTBLOB_PICKLE,
            "path": str(folder), "root": str(ours),
            "fingerprint": hashlib.sha256(pickle_path.read_bytes()).hexdigest()[:16]}


def use_tagger_data() -> dict[str, str]:
    """tagger_source(), with our folder (when it is the one) on nltk.data.path."""
    import nltk

    src = tagger_source()
    if "root" in src and src["root"] not in nltk.data.path:
        nltk.data.path.append(src["root"])
    return src


def _files_fingerprint(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")) if folder.is_dir() else [folder]:
        if p.is_file():
            h.update(f"{p.name}:{p.stat().st_size}".encode())
    return h.hexdigest()[:16]


class FastTagger:
    """NLTK's PerceptronTagger, memoised. Its decision for a token reads only the token, the two
    normalised words on each side and the two previous tags; we memoise on exactly those and score
    misses with one dense (features x classes) matrix, summing the same weights in the same order
    and breaking ties as NLTK does (highest score, then the alphabetically last tag)."""

    def __init__(self) -> None:
        from nltk.tag.perceptron import PerceptronTagger

        use_tagger_data()  # makes sure NLTK finds the data
        self.nltk_tagger = PerceptronTagger()
        weights = self.nltk_tagger.model.weights
        self.classes = sorted(self.nltk_tagger.classes)
        col = {c: j for j, c in enumerate(self.classes)}
        self.feature_row = {f: i for i, f in enumerate(weights)}
        self.matrix = np.zeros((len(weights), len(self.classes)), dtype=np.float64)
        for i, per_class in enumerate(weights.values()):
            for label, w in per_class.items():
                self.matrix[i, col[label]] = w
        self.memo: dict[tuple, str] = {}

    def _predict(self, i: int, word: str, context: list[str], prev: str, prev2: str) -> str:
        features = self.nltk_tagger._get_features(i, word, context, prev, prev2)
        rows = [self.feature_row[f] for f, v in features.items() if v and f in self.feature_row]
        scores = self.matrix[rows].sum(axis=0) if rows else np.zeros(len(self.classes))
        last_best = len(scores) - 1 - int(np.argmax(scores[::-1]))
        return self.classes[last_best]

    def tag(self, tokens: list[str]) -> list[str]:
        t = self.nltk_tagger
        prev, prev2 = t.START
        context = t.START + [t.normalize(w) for w in tokens] + t.END
        tags = []
        for i, word in enumerate(tokens):
            tag = t.tagdict.get(word)
            if not tag:
                key = (word, context[i], context[i + 1], context[i + 3], context[i + 4], prev, prev2)
                tag = self.memo.get(key)
                if tag is None:
                    tag = self.memo[key] = self._predict(i, word, context, prev, prev2)
            tags.append(tag)
            prev2, prev = prev, tag
        return tags


# ----------------------------------------------------------------------------------------------
# Lemmatising


def _wordnet_present() -> bool:
    return _find_data("corpora/wordnet") is not None


def resolve_lemmatizer(name: str) -> str:
    if name == "auto":
        return "wordnet" if _wordnet_present() else "lemminflect"
    if name not in ("wordnet", "lemminflect"):
        raise UserError(f"unknown lemmatizer {name!r}; choose auto, wordnet or lemminflect")
    if name == "wordnet" and not _wordnet_present():
        raise UserError("lemmatizer 'wordnet' needs NLTK's WordNet data (nltk.download('wordnet')); "
                        "'lemminflect' works offline")
    return name


def lemmatizer_description(name: str) -> str:
    if name == "wordnet":
        return "nltk WordNetLemmatizer (pos=n)"
    import importlib.metadata as md

    return f"lemminflect=={md.version('lemminflect')} getLemma(upos=NOUN)"


# Part of speech -> (WordNet's letter, lemminflect's universal tag).
_LEMMA_POS = {"noun": ("n", "NOUN"), "adjective": ("a", "ADJ")}


def make_lemmatizer(name: str, pos: str) -> Callable[[str], str]:
    """A cached word -> lemma function for nouns or adjectives, by WordNet or lemminflect."""
    wordnet_pos, upos = _LEMMA_POS[pos]
    if name == "wordnet":
        from nltk.stem import WordNetLemmatizer

        wnl = WordNetLemmatizer()
        return functools.lru_cache(maxsize=None)(lambda w: wnl.lemmatize(w, wordnet_pos))
    from lemminflect import getLemma

    def lemma(word: str) -> str:
        found = getLemma(word, upos=upos)
        return found[0] if found else word

    return functools.lru_cache(maxsize=None)(lemma)


# ----------------------------------------------------------------------------------------------
# Counting and filtering


@dataclass
class WordCounts:
    """Adjective and noun counts and adjective->noun bigram counts of a corpus (before filtering)."""

    adjectives: Counter
    nouns: Counter
    edges: Counter  # (adjective, noun) -> count

    def to_json(self) -> dict:
        return {"adjectives": dict(self.adjectives), "nouns": dict(self.nouns),
                "edges": [[a, n, c] for (a, n), c in self.edges.items()]}

    @classmethod
    def from_json(cls, d: dict) -> "WordCounts":
        return cls(Counter(d["adjectives"]), Counter(d["nouns"]), Counter({(a, n): c for a, n, c in d["edges"]}))


def count_words(captions: Iterable[str], rules: PosRules, lemmatizer: str,
                tagger: Callable[[list[str]], list[str]] | None = None) -> WordCounts:
    """Tag every caption; count adjectives and (lemmatised) nouns, and adjective-noun bigrams."""
    tag = tagger or FastTagger().tag
    nouns_t, adjs_t = frozenset(rules.noun_tags), frozenset(rules.adj_tags)
    noun_form = make_lemmatizer(lemmatizer, "noun") if rules.lemmatize_nouns else (lambda w: w)
    adj_form = make_lemmatizer(lemmatizer, "adjective") if rules.lemmatize_adjectives else (lambda w: w)
    adjectives, nouns, edges = Counter(), Counter(), Counter()
    for caption in captions:
        tokens = tokenize(caption)
        tags = tag(tokens)
        forms: list[tuple[str, str] | None] = []
        for word, t in zip(tokens, tags):
            if t in nouns_t:
                forms.append(("n", noun_form(word)))
                nouns[forms[-1][1]] += 1
            elif t in adjs_t:
                forms.append(("a", adj_form(word)))
                adjectives[forms[-1][1]] += 1
            else:
                forms.append(None)
        for left, right in zip(forms, forms[1:]):
            if left is not None and right is not None and left[0] == "a" and right[0] == "n":
                edges[(left[1], right[1])] += 1
    return WordCounts(adjectives, nouns, edges)


def _stopwords() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def split_sizes(k: int, n_adj: int, n_noun: int) -> tuple[int, int]:
    """Split K codes between adjectives and nouns in the ratio n_adj : n_noun (rounded), each at
    least one when K >= 2, neither more than there are words."""
    total = n_adj + n_noun
    if k > total:
        raise UserError(f"codebook size {k} is larger than the prior's vocabulary ({n_adj} adjectives + {n_noun} "
                        f"nouns = {total} words); use a smaller size or a larger corpus / lower min_count")
    a = int(round(k * n_adj / total)) if total else 0
    if k >= 2 and n_adj and n_noun:
        a = min(max(a, 1), k - 1)
    a = min(a, n_adj)
    a = max(a, k - n_noun)
    return a, k - a


@dataclass
class Vocabulary:
    """The kept words, most frequent first (ties alphabetical), and the edges between kept words."""

    adjectives: list[str]
    adj_counts: list[int]
    nouns: list[str]
    noun_counts: list[int]
    edges: list[tuple[int, int, int]]  # (adjective index, noun index, count), sorted by count


def _ranked(counter: Counter, keep: Callable[[str, int], bool]) -> list[tuple[str, int]]:
    return sorted(((w, c) for w, c in counter.items() if keep(w, c)), key=lambda wc: (-wc[1], wc[0]))


def filter_counts(counts: WordCounts, rules: PosRules) -> Vocabulary:
    pattern = re.compile(rules.word_pattern)
    stop = _stopwords() if rules.remove_stopwords else frozenset()

    def keep(word: str, count: int) -> bool:
        return (count > rules.min_count and len(word) >= rules.min_length and word not in stop
                and pattern.fullmatch(word) is not None)

    adjs, nouns = _ranked(counts.adjectives, keep), _ranked(counts.nouns, keep)
    if rules.top_k is not None:
        n_a, n_n = split_sizes(rules.top_k, len(adjs), len(nouns))
        adjs, nouns = adjs[:n_a], nouns[:n_n]
    return make_vocabulary(adjs, nouns, counts.edges)


def make_vocabulary(adjs: list[tuple[str, int]], nouns: list[tuple[str, int]], edge_counts: Counter) -> Vocabulary:
    a_idx = {w: i for i, (w, _) in enumerate(adjs)}
    n_idx = {w: i for i, (w, _) in enumerate(nouns)}
    edges = sorted(((a_idx[a], n_idx[n], c) for (a, n), c in edge_counts.items() if a in a_idx and n in n_idx),
                   key=lambda e: (-e[2], e[0], e[1]))
    return Vocabulary([w for w, _ in adjs], [c for _, c in adjs], [w for w, _ in nouns], [c for _, c in nouns], edges)
