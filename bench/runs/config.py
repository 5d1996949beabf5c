"""One cell of the grid (`RunConfig`, what a user asks for) and its resolution (`ResolvedRun`:
every option of the method and every preset field, typed), whose hash is the run id.

Resolving validates everything that can be known before work starts (names, numbers, option types,
the method's own constraints, the dataset's folder), so bad input fails with one line and no run
folder. `ResolvedRun.to_dict()` is the `config` of a record, in the JSON layout records have always
had, so ids and old records stay valid.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import numbers
import re
from dataclasses import dataclass, field
from typing import Any

from bench.core.errors import UserError
from bench.runs.presets import ModelPreset, TrainPreset, preset


@dataclass
class RunConfig:
    """One cell of the grid. Everything else comes from the preset."""

    method: str
    dataset: str = "photos"
    codebook_size: int = 1024
    seed: int = 0
    preset: str = "cpu-tiny"
    steps: int | None = None  # None: the preset's
    method_options: dict[str, Any] = field(default_factory=dict)
    dataset_options: dict[str, Any] = field(default_factory=dict)  # change the images: part of the run id
    data_root: str | None = None
    # Where the data is and how it is read; none of these changes a finished run's images, so none is
    # part of the run id: per-dataset folders (--dataset-path NAME=PATH), the opt-in decoded cache,
    # and skipping unreadable files (counted in the record) instead of failing the run.
    dataset_paths: dict[str, str] = field(default_factory=dict)
    dataset_cache: bool = False
    skip_bad_images: bool = False
    device: str | None = None  # None: cuda when available, else cpu (not part of the run id)
    compile: bool = False  # torch.compile the encoder, decoder and discriminator (how, not what: not in the run id)


@dataclass(frozen=True)
class ResolvedRun:
    """Everything that determines a run's result, typed; plus the RunConfig it came from (which also
    says where the data is and how the run executes, none of it in the run id)."""

    method: str
    dataset: str  # canonical (aliases resolved; `imagefolder:` with an absolute path)
    codebook_size: int
    seed: int
    preset: str
    method_options: Any  # the method's Options dataclass, every field resolved
    dataset_options: dict[str, Any]
    model: ModelPreset
    train: TrainPreset  # with --steps applied
    config: RunConfig = field(compare=False)

    @property
    def steps(self) -> int:
        return self.train.steps

    def to_dict(self) -> dict[str, Any]:
        """The record's `config`: JSON-ready, hashed into the run id."""
        return {
            "method": self.method,
            "dataset": self.dataset,
            "codebook_size": self.codebook_size,
            "seed": self.seed,
            "preset": self.preset,
            "steps": self.train.steps,
            "method_options": dataclasses.asdict(self.method_options),
            "dataset_options": dict(self.dataset_options),
            "model": dataclasses.asdict(self.model),
            "train": dataclasses.asdict(self.train),
        }

    @property
    def run_id(self) -> str:
        """Readable prefix plus a stable hash of `to_dict()`: equal configs, equal ids."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        digest = hashlib.sha256(blob).hexdigest()[:10]
        # the id names a folder: imagefolder:/data/x/pics -> imagefolder_x_pics
        base, _, path = self.dataset.partition(":")
        dataset = re.sub(r"[^A-Za-z0-9._]+", "_", "_".join([base, *path.strip("/").split("/")[-2:]])).strip("_")[:48]
        return f"{self.method}-{dataset}-K{self.codebook_size}-s{self.seed}-{digest}"

    def data_options(self) -> dict[str, Any]:
        """Keyword options of `datasets.create` for this run: the dataset options, plus how the images
        are read (folder, decoded cache, bad-file skipping, the crop seed), which is not in the run id."""
        c = self.config
        return dict(self.dataset_options, path=dataset_path(c), seed=self.seed, cache=c.dataset_cache,
                    skip_bad_images=c.skip_bad_images)

    def describe(self) -> str:
        return f"{self.method} on {self.dataset} K={self.codebook_size} seed={self.seed}"

    def with_train(self, **changes: Any) -> ResolvedRun:
        """A copy with some training fields changed (the speed benchmark's batch size, say)."""
        return dataclasses.replace(self, train=dataclasses.replace(self.train, **changes))


def resolve(cfg: RunConfig) -> ResolvedRun:
    """Validate the config and expand it into a ResolvedRun. Fails before any work starts."""
    import datasets
    import methods

    for name, value in (("codebook size", cfg.codebook_size), ("seed", cfg.seed)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise UserError(f"{name} must be an integer, got {value!r}")
    if cfg.codebook_size < 1:
        raise UserError(f"codebook size must be a positive integer, got {cfg.codebook_size}")
    if cfg.steps is not None and (isinstance(cfg.steps, bool) or not isinstance(cfg.steps, numbers.Integral)
                                  or cfg.steps < 1):
        raise UserError(f"steps must be a positive integer, got {cfg.steps}")
    if cfg.seed < 0:
        raise UserError(f"seed must be a non-negative integer, got {cfg.seed}")
    p = preset(cfg.preset)
    dataset = datasets.canonical_name(cfg.dataset)  # aliases (adeg20k) are recorded as the canonical name
    datasets.check_options(dataset, cfg.dataset_options)
    datasets.locate(dataset, cfg.data_root, dataset_path(cfg))  # a missing folder fails before any work
    options = methods.build_options(cfg.method, **cfg.method_options)
    methods.validate(cfg.method, cfg.codebook_size, p.model.embed_dim, options)
    train = p.train if cfg.steps is None else dataclasses.replace(p.train, steps=int(cfg.steps))
    return ResolvedRun(method=cfg.method, dataset=dataset, codebook_size=int(cfg.codebook_size), seed=int(cfg.seed),
                       preset=p.name, method_options=options, dataset_options=dict(cfg.dataset_options),
                       model=p.model, train=train, config=cfg)


def dataset_path(cfg: RunConfig) -> str | None:
    """The --dataset-path given for this config's dataset (keys may be aliases)."""
    import datasets

    name = datasets.canonical_name(cfg.dataset)
    for key, path in cfg.dataset_paths.items():
        if datasets.canonical_name(key) == name:
            return path
    return None
