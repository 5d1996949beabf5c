"""Build (or load from the cache) a codebook prior: corpus -> POS filter -> language model -> prior.

    python -m codebooks.build                                  # the default: CuPL + all-MiniLM-L6-v2
    python -m codebooks.build --encoder glove --min-count 20
    python -m codebooks.build --corpus coco:/data/coco/annotations/captions_train2017.json --encoder clip
    python -m codebooks.build --corpus union:folder:/data/cub/text_c10,folder:/data/flowers/text_c10,coco:/data/coco/annotations/captions_train2014.json --encoder clip
    python -m codebooks.build --show PATH                      # print a saved prior

A prior is cached under $VQBENCH_CACHE/codebook_priors/<key>, the key being a hash of everything that
determines it: the corpus content, tagger data, lemmatiser, POS rules, language model, templates and
the vqbench version. Raw counts are cached separately (by corpus, tagger, lemmatiser and tag sets),
so trying another language model or threshold does not tag the corpus again.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from bench.core.atomic import write_json_atomic
from bench.core.errors import UserError
from bench.core.paths import cache_dir

from . import pos
from .corpus import DEFAULT_CORPUS, load_corpus
from .encoders import DEFAULT_ENCODER, Templates, make_encoder
from .prior import Prior

FORMAT_VERSION = 1  # bump when the files or the build change in a way that alters a prior
PRIORS_DIR = "codebook_priors"
COUNTS_DIR = "codebook_counts"


@dataclass(frozen=True)
class BuildConfig:
    corpus: str = DEFAULT_CORPUS  # see codebooks.corpus
    encoder: str = DEFAULT_ENCODER  # see codebooks.encoders
    noun_template: str | None = None  # None: the encoder's default ("a photo of {}"; GloVe "{}")
    adj_template: str | None = None  # None: the encoder's default ("a photo of {} object"; GloVe "{}")
    rules: pos.PosRules = field(default_factory=pos.PosRules)


@dataclass
class BuildInfo:
    key: str
    path: Path
    cached: bool  # loaded from disk (True) or built now (False)
    seconds: float


# In-process memo keyed by the config and the cache folder: many quantizers are created per process
# (tests, grids) and must not re-read the corpus to find their key.
_MEMO: dict[tuple[BuildConfig, str], Prior] = {}
_LOCK = threading.Lock()
last_build: BuildInfo | None = None  # what the latest build_prior call did (for reports and tests)


def _vqbench_version() -> str:
    from bench.runs.records import VERSION

    return VERSION


def _hash(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _templates(config: BuildConfig, default: Templates) -> Templates:
    return Templates(config.noun_template or default.noun, config.adj_template or default.adjective)


def _counts(corpus, rules: pos.PosRules, lemmatizer: str, tagger: dict, log) -> pos.WordCounts:
    """Raw adjective/noun/edge counts of the corpus, from the cache or tagged now."""
    key = _hash({"corpus": corpus.sha256, "tagger": tagger["fingerprint"], "lemmatizer": lemmatizer,
                 "rules": rules.counting_key(), "format": FORMAT_VERSION})
    path = cache_dir(COUNTS_DIR) / f"{key}.json"
    if path.is_file():
        return pos.WordCounts.from_json(json.loads(path.read_text()))
    t0 = time.perf_counter()
    counts = pos.count_words(corpus.captions, rules, lemmatizer)
    log(f"tagged {len(corpus.captions)} captions in {time.perf_counter() - t0:.1f}s")
    write_json_atomic(path, counts.to_json())
    return counts


def resolve(config: BuildConfig) -> tuple[str, dict, object, object]:
    """(cache key, metadata without results, corpus, encoder) of a config; loads no model weights."""
    rules = config.rules
    if rules.min_count < 0:
        raise UserError(f"min_count must be >= 0, got {rules.min_count}")
    if rules.top_k is not None and rules.top_k < 1:
        raise UserError(f"top_k must be a positive integer, got {rules.top_k}")
    corpus = load_corpus(config.corpus)
    encoder = make_encoder(config.encoder)
    templates = _templates(config, encoder.default_templates)
    lemmatizer = pos.resolve_lemmatizer(rules.lemmatizer)
    tagger = pos.tagger_source()
    meta = {
        "corpus": corpus.describe(),
        "tokenizer": "nltk word_tokenize(lower-cased caption, preserve_line=True)",
        "tagger": tagger,
        "lemmatizer": pos.lemmatizer_description(lemmatizer) if (rules.lemmatize_nouns or rules.lemmatize_adjectives)
        else "none",
        "rules": {**dataclasses.asdict(rules), "lemmatizer": lemmatizer},
        "encoder": encoder.describe(),
        "templates": {"noun": templates.noun, "adjective": templates.adjective},
        "vqbench": _vqbench_version(),
        "format": FORMAT_VERSION,
    }
    # Paths inside the metadata differ between machines; the key hashes only what determines the result.
    key_obj = {**meta, "corpus": {"sha256": corpus.sha256}, "tagger": tagger["fingerprint"]}
    key_obj["encoder"] = {k: v for k, v in meta["encoder"].items() if not (k == "model" and "fingerprint" in meta["encoder"])}
    return _hash(key_obj), meta, corpus, encoder


def build_prior(config: BuildConfig | None = None, force: bool = False, verbose: bool = False) -> Prior:
    """The prior for `config`: memoised in this process, else loaded from the cache, else built and cached."""
    global last_build
    config = config or BuildConfig()
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if verbose else (lambda msg: None)
    t0 = time.perf_counter()
    with _LOCK:
        memo_key = (config, str(cache_dir(PRIORS_DIR)))
        if not force and memo_key in _MEMO:
            prior = _MEMO[memo_key]
            last_build = BuildInfo(prior.metadata["key"], prior.path, True, time.perf_counter() - t0)
            return prior
        key, meta, corpus, encoder = resolve(config)
        folder = cache_dir(PRIORS_DIR) / key
        if not force and (folder / "metadata.json").is_file():
            prior = Prior.load(folder)
            last_build = BuildInfo(key, folder, True, time.perf_counter() - t0)
        else:
            prior = _build(config, key, meta, corpus, encoder, folder, log, force)
            last_build = BuildInfo(key, folder, False, time.perf_counter() - t0)
            log(f"built prior {key} in {last_build.seconds:.1f}s")
        _MEMO[memo_key] = prior
        return prior


def _build(config, key, meta, corpus, encoder, folder: Path, log, force: bool) -> Prior:
    rules = config.rules
    counts = _counts(corpus, rules, meta["rules"]["lemmatizer"], meta["tagger"], log)
    vocab = pos.filter_counts(counts, rules)
    if not vocab.adjectives or not vocab.nouns:
        raise UserError(f"corpus {config.corpus!r} leaves {len(vocab.adjectives)} adjectives and {len(vocab.nouns)} "
                        f"nouns seen more than {rules.min_count} times; both are needed (lower min_count?)")
    t0 = time.perf_counter()
    t = meta["templates"]
    adj_vectors = encoder.encode([t["adjective"].format(w) for w in vocab.adjectives])
    noun_vectors = encoder.encode([t["noun"].format(w) for w in vocab.nouns])
    log(f"encoded {len(vocab.adjectives) + len(vocab.nouns)} words with {encoder.kind} in {time.perf_counter() - t0:.1f}s")
    meta = {**meta, "key": key, "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "sizes": {"adjectives": len(vocab.adjectives), "nouns": len(vocab.nouns), "edges": len(vocab.edges),
                      "dim": int(adj_vectors.shape[1])},
            "raw_counts": {"adjectives": len(counts.adjectives), "nouns": len(counts.nouns), "edges": len(counts.edges)}}
    oov = getattr(encoder, "oov", None)
    if oov is not None:
        meta["oov_zero_vectors"] = len(oov)
    prior = Prior.from_vocabulary(vocab, adj_vectors, noun_vectors, meta)
    if force and folder.exists():
        import shutil

        shutil.rmtree(folder)
    prior.save(folder)
    return prior


def clear_memo() -> None:
    _MEMO.clear()


# ----------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    d = pos.PosRules()
    p = argparse.ArgumentParser(prog="python -m codebooks.build", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default=DEFAULT_CORPUS,
                   help="cupl | text:PATH | coco:PATH | folder:PATH | union:SPEC,SPEC,... (default: cupl; the paper: "
                        "union:folder:CUB_TEXT_C10,folder:FLOWERS_TEXT_C10,coco:CAPTIONS_JSON)")
    p.add_argument("--encoder", default=DEFAULT_ENCODER,
                   help="minilm | glove | clip | clip:ID_OR_FOLDER | hf:ID_OR_FOLDER (default: minilm)")
    p.add_argument("--noun-template", default=None, help="default: 'a photo of {}' ('{}' for glove)")
    p.add_argument("--adj-template", default=None, help="default: 'a photo of {} object' ('{}' for glove)")
    p.add_argument("--min-count", type=int, default=d.min_count, help=f"keep words seen more than this (default {d.min_count})")
    p.add_argument("--top-k", type=int, default=None, help="keep only the K most frequent words (default: all)")
    p.add_argument("--remove-stopwords", action="store_true", help="drop English stop words")
    p.add_argument("--no-lemmatize", action="store_true", help="keep nouns as written")
    p.add_argument("--lemmatizer", default=d.lemmatizer, choices=("auto", "wordnet", "lemminflect"))
    p.add_argument("--adj-tags", default=",".join(d.adj_tags), help=f"Penn tags of adjectives (default {','.join(d.adj_tags)})")
    p.add_argument("--noun-tags", default=",".join(d.noun_tags), help=f"Penn tags of nouns (default {','.join(d.noun_tags)})")
    p.add_argument("--force", action="store_true", help="rebuild even if cached")
    p.add_argument("--show", type=Path, default=None, metavar="PATH", help="print the prior saved in PATH and exit")
    p.add_argument("--top", type=int, default=20, help="how many words and edges to print (default 20)")
    return p


def config_from_args(args: argparse.Namespace) -> BuildConfig:
    rules = pos.PosRules(
        noun_tags=tuple(t.strip() for t in args.noun_tags.split(",") if t.strip()),
        adj_tags=tuple(t.strip() for t in args.adj_tags.split(",") if t.strip()),
        lemmatize_nouns=not args.no_lemmatize, lemmatizer=args.lemmatizer, min_count=args.min_count,
        top_k=args.top_k, remove_stopwords=args.remove_stopwords)
    return BuildConfig(args.corpus, args.encoder, args.noun_template, args.adj_template, rules)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.show is not None:
            print(Prior.load(args.show).summary(args.top, args.top))
            return 0
        prior = build_prior(config_from_args(args), force=args.force, verbose=True)
    except UserError as exc:
        print(f"codebooks.build: error: {exc}", file=sys.stderr)
        return 2
    info = last_build
    print(prior.summary(args.top, args.top))
    print(f"{'loaded from cache' if info.cached else 'built'} in {info.seconds:.1f}s: {info.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
