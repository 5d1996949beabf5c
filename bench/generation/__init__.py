"""Stage 2: a token prior for every tokenizer. A GPT-style causal transformer is trained on a frozen
tokenizer's index grids (the training split, encoded once and cached in the tokenizer's run folder),
samples new grids (top-k / top-p / temperature, classifier-free guidance when the data has labels),
and the decoded samples are scored: generation FID and KID against the training split, Inception
Score where the weights have logits, precision and recall, and a sample grid.

    from bench.generation import run_prior
    record = run_prior("results/runs/<run_id>", "cpu-tiny", "results")   # OUT/priors/<prior_id>/record.json

Files: config (presets), layout (index grid <-> sequence), transformer, sampling, tokens (the token
cache), train (the loop), metrics (generation metrics), folder (file names), record, run (end to
end). Knows nothing of scheduling: the same `run_prior` runs in-process or in a worker. See
docs/generation.md.

Importing the package costs nothing (no torch): `run_prior` is loaded on first use, so the reporting
code can read prior folders (bench.generation.folder) without the training code."""
from __future__ import annotations

from typing import Any

__all__ = ["PRIOR_PRESETS", "PriorConfig", "prior_preset", "run_prior"]


def __getattr__(name: str) -> Any:
    if name == "run_prior":
        from bench.generation.run import run_prior

        return run_prior
    if name in ("PRIOR_PRESETS", "PriorConfig", "prior_preset"):
        from bench.generation import config

        return getattr(config, name)
    raise AttributeError(f"module 'bench.generation' has no attribute {name!r}")
