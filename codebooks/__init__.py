"""Transferred codebook priors: corpus -> part-of-speech filter -> language model -> saved prior.

    from codebooks import BuildConfig, build_prior
    prior = build_prior()                                   # CuPL captions + all-MiniLM-L6-v2, cached
    prior = build_prior(BuildConfig(corpus="coco:captions_train2017.json", encoder="clip"))
    print(prior)                                            # sizes, top words, top edges
    small = prior.subset(256)                               # 256 most frequent words, adj:noun in ratio

`python -m codebooks.build --help` is the command line. See docs/vqct.md.
"""
from .build import BuildConfig, build_prior
from .corpus import Corpus, load_corpus
from .encoders import Templates, TextEncoder, make_encoder
from .pos import PosRules
from .prior import Prior

__all__ = ["BuildConfig", "Corpus", "PosRules", "Prior", "Templates", "TextEncoder", "build_prior", "load_corpus",
           "make_encoder"]
