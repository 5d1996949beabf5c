"""Local weight folders of the networks behind FD-DINOv2 and CMMD (`--metric-weights
dinov2=PATH,clip=PATH` on run_bench.py and python -m bench.metrics).

Nothing is downloaded: each folder is a Hugging Face model folder (config.json and the weights) that
transformers loads with `from_pretrained(PATH)`. The setting lives in the environment variable
METRIC_WEIGHTS_ENV, so it reaches every process that evaluates (Ray workers, data-parallel workers,
subprocesses) without entering the run configuration: the weights decide extra metrics, not the run,
so they are not part of the run id; each record's protocol names the folder that ran.

Without a folder the metric is unavailable: `why_unavailable(name)` is the one line that says where
the weights come from, shown by `run_bench.py list`, in the record's protocol and under the tables.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bench.core.errors import UserError

METRIC_WEIGHTS_ENV = "VQBENCH_METRIC_WEIGHTS"
FLAG = "--metric-weights"


@dataclass(frozen=True)
class Weights:
    name: str  # the key in --metric-weights
    network: str
    metric: str  # the metrics that need it
    source: str  # where to get the folder


WEIGHTS = {
    "dinov2": Weights("dinov2", "DINOv2 ViT-L/14", "FD-DINOv2",
                      "the Hugging Face model facebook/dinov2-large (e.g. `huggingface-cli download "
                      "facebook/dinov2-large --local-dir PATH` on a machine with a network)"),
    "clip": Weights("clip", "CLIP ViT-L/14@336", "CMMD",
                    "the Hugging Face model openai/clip-vit-large-patch14-336 (e.g. `huggingface-cli download "
                    "openai/clip-vit-large-patch14-336 --local-dir PATH` on a machine with a network)"),
}


def parse(text: str) -> dict[str, Path]:
    """{name: folder} of `dinov2=PATH,clip=PATH`; UserError (one line, exit 2) for an unknown name, a
    missing '=', or a folder without config.json."""
    out: dict[str, Path] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, path = part.partition("=")
        name = name.strip()
        if not sep or not path.strip():
            raise UserError(f"{FLAG} {part!r}: give NAME=PATH, e.g. dinov2=/models/dinov2-large")
        if name not in WEIGHTS:
            raise UserError(f"{FLAG} {part!r}: unknown network {name!r}; choose from {', '.join(WEIGHTS)}")
        folder = Path(path.strip()).expanduser()
        if not (folder / "config.json").is_file():
            raise UserError(f"{FLAG} {name}={folder}: no config.json there; the folder must be a Hugging Face "
                            f"model folder of {WEIGHTS[name].network} ({WEIGHTS[name].source})")
        out[name] = folder.resolve()
    return out


def encode(folders: dict[str, Path]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(folders.items()))


def use(text: str | None) -> dict[str, Path]:
    """Check `--metric-weights` and set it for this process and the ones it starts; None leaves the
    environment as it is. Returns the folders now configured."""
    if text is not None:
        os.environ[METRIC_WEIGHTS_ENV] = encode(parse(text))
    return configured()


def configured() -> dict[str, Path]:
    """The folders set for this process (empty without the variable). A folder that vanished since
    reads as not configured: the metric is then unavailable rather than failing the evaluation."""
    text = os.environ.get(METRIC_WEIGHTS_ENV, "")
    try:
        return parse(text)
    except UserError:
        return {k: Path(v) for k, _, v in (p.partition("=") for p in text.split(",") if "=" in p)
                if k in WEIGHTS and (Path(v) / "config.json").is_file()}


def folder(name: str) -> Path | None:
    return configured().get(name)


def why_unavailable(name: str) -> str | None:
    """None when the weights are configured, else the one line saying where to get them."""
    if folder(name) is not None:
        return None
    w = WEIGHTS[name]
    return (f"{w.metric} unavailable: no {w.network} weights; get {w.source} and pass "
            f"{FLAG} {name}=PATH")
