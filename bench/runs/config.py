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
from typing import Any, Callable

from bench.core.errors import UserError
from bench.evaluation.metrics import fid_reference_choice
from bench.runs import official_vqct
from bench.runs.presets import ModelPreset, TrainPreset, default_preset, preset, recorded_train, why_default


FULL = "full"
# The largest step count or seed accepted: far beyond any run, so that extra digits typed into --steps
# are refused before training, and every seed derived from it (per step, per micro-batch) stays
# within the 64 bits that torch's generators take.
LARGEST_COUNT = 2**31 - 1



def config_digest(config: dict[str, Any]) -> str:
    """The stable hash in a run id: equal configs, equal digests (key order does not matter)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:10]


def dataset_slug(dataset: str) -> str:
    """The dataset part of a run id, which names a folder: imagefolder:/data/x/pics -> imagefolder_x_pics."""
    base, _, path = dataset.partition(":")
    return re.sub(r"[^A-Za-z0-9._]+", "_", "_".join([base, *path.strip("/").split("/")[-2:]])).strip("_")[:48]

@dataclass
class RunConfig:
    """One cell of the grid. Everything else comes from the preset."""

    method: str
    dataset: str = "photos"
    codebook_size: int | str = 1024  # K, or "full": the whole vocabulary of a method that has one (VQCT)
    seed: int = 0
    preset: str | None = None  # None: presets.default_preset() (gpu with a CUDA GPU, else cpu-tiny)
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
    tensorboard: bool = True  # training curves as TensorBoard events in the run folder (not in the run id)
    # Deterministic CUDA kernels (bench/training/determinism.py): a CUDA run repeats itself bit for bit.
    # Recorded, not in the run id: it changes how a result is computed, not which result is asked for.
    deterministic: bool = False
    # Data-parallel workers of this one run (GPUs, or CPU processes for tests). Not in the run id: the
    # preset's global batch is kept, so N workers with fewer accumulation steps give the same result
    # as one worker with more, to float tolerance.
    workers: int = 1
    # Folders of VQCT's official prior, read by the vqct-official preset only (--vqct-captions, --vqct-clip):
    # the caption corpus and CLIP's text encoder. Not in the run id themselves: they reach it as the corpus
    # and encoder options of the methods that build the prior, and as K.
    vqct_captions: str | None = None
    vqct_clip: str | None = None
    # What rFID compares the reconstructions with (--fid-reference; bench.evaluation.metrics.
    # fid_reference_choice): val, train[:N] or stats:PATH. Anything but val changes the numbers and
    # enters the run id; val adds nothing to it, so ids from before the option are unchanged.
    fid_reference: str = fid_reference_choice.DEFAULT
    # The --bits-per-image budget B that chose this run's K (bench.runs.bit_budget). Recorded, not in the
    # run id (K is, as any K): the conclusion's command to run more seeds repeats B, which gives every
    # method of the grid its own K again, where one --codebook-sizes list would cross them all.
    bits_budget: float | None = None


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
    fid_reference: fid_reference_choice.ReferenceChoice = field(
        default_factory=lambda: fid_reference_choice.ReferenceChoice(fid_reference_choice.VAL))

    @property
    def steps(self) -> int:
        return self.train.steps

    @property
    def micro_batch(self) -> int:
        """Images per forward pass on one device."""
        return self.train.micro_batch or self.train.batch_size // self.config.workers

    @property
    def accumulation(self) -> int:
        """Forward/backward passes per optimizer step on each worker."""
        return self.train.batch_size // (self.micro_batch * self.config.workers)

    @property
    def lr(self) -> float:
        """taming's scaling: base_lr x global batch (= GPUs x batch per GPU x accumulation)."""
        return self.train.base_lr * self.train.batch_size

    def optimization(self) -> dict[str, Any]:
        """How the global batch is made, for the record."""
        return {"global_batch": self.train.batch_size, "micro_batch": self.micro_batch, "workers": self.config.workers,
                "accumulation": self.accumulation, "lr": self.lr}

    @property
    def preset_source(self) -> str:
        """Why this preset: given, or the default for this machine (printed and recorded)."""
        if self.config.preset is not None:
            return "given"
        return why_default(self.preset)

    def record_keys(self) -> dict[str, Any]:
        """Top-level keys its record has beyond a trained run's: none (a released evaluation's has some,
        bench.released.job.ResolvedEval.record_keys)."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        """The record's `config`: JSON-ready, hashed into the run id. `fid_reference` only when it is not
        val (fid_reference_choice), so the ids of every run from before the option stay as they were."""
        reference = self.fid_reference.run_id_value
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
            "train": recorded_train(self.train),
            **({"fid_reference": reference} if reference is not None else {}),
        }

    @property
    def run_id(self) -> str:
        """Readable prefix plus a stable hash of `to_dict()`: equal configs, equal ids."""
        return f"{self.method}-{dataset_slug(self.dataset)}-K{self.codebook_size}-s{self.seed}-{config_digest(self.to_dict())}"

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

    full = cfg.codebook_size == FULL
    for name, value in (("codebook size", 1 if full else cfg.codebook_size), ("seed", cfg.seed)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise UserError(f"{name} must be an integer{' or full' if name == 'codebook size' else ''}, got {value!r}")
    if not full and cfg.codebook_size < 1:
        raise UserError(f"codebook size must be a positive integer, got {cfg.codebook_size}")
    if cfg.steps is not None and (isinstance(cfg.steps, bool) or not isinstance(cfg.steps, numbers.Integral)
                                  or cfg.steps < 1):
        raise UserError(f"steps must be a positive integer, got {cfg.steps}")
    if cfg.seed < 0:
        raise UserError(f"seed must be a non-negative integer, got {cfg.seed}")
    for name, value in (("steps", cfg.steps), ("seed", cfg.seed)):
        if value is not None and value > LARGEST_COUNT:
            raise UserError(f"{name} must be at most {LARGEST_COUNT:,} (2^31 - 1), got {value}")
    if isinstance(cfg.workers, bool) or not isinstance(cfg.workers, numbers.Integral) or cfg.workers < 1:
        raise UserError(f"workers per run must be a positive integer, got {cfg.workers!r}")
    reference = fid_reference_choice.parse(cfg.fid_reference)  # a bad statistics file stops here
    p = preset(cfg.preset if cfg.preset is not None else default_preset())
    _check_batch(p.name, p.train, int(cfg.workers))
    dataset = datasets.canonical_name(cfg.dataset)  # aliases (adeg20k) are recorded as the canonical name
    given = official_vqct.adapt(cfg, p, dataset)  # the options a preset completes (vqct-official's prior, recipe)
    datasets.check_options(dataset, given.dataset_options)
    datasets.locate(dataset, cfg.data_root, dataset_path(cfg))  # a missing folder fails before any work
    options = methods.build_options(cfg.method, **given.method_options)
    k = (full_codebook_size(cfg.method, p.model.embed_dim, options, given.shared_vocabulary) if full
         else int(cfg.codebook_size))
    fixed = methods.entry(cfg.method).cls.fixed_codebook_size(options)
    if fixed is not None and k != fixed:  # its codes are what they are: a run id saying another K would lie
        raise UserError(f"method {cfg.method!r} has a fixed codebook of {fixed:,} codes, so codebook size {k} cannot "
                        f"be asked of it; give --codebook-sizes full (or {fixed}), or drop --codebook-sizes (the "
                        f"grid then gives {cfg.method} its own K)")
    methods.validate(cfg.method, k, p.model.embed_dim, options)
    if p.train.epochs is not None:  # the length in epochs of this dataset's training split, as steps
        n = official_vqct.train_images(dataset, p.model.resolution, cfg.data_root,
                                       dict(given.dataset_options, path=dataset_path(cfg),
                                            skip_bad_images=cfg.skip_bad_images))
        train = official_vqct.length(p.train, n, cfg.steps)
    else:
        train = p.train if cfg.steps is None else dataclasses.replace(p.train, steps=int(cfg.steps))
    return ResolvedRun(method=cfg.method, dataset=dataset, codebook_size=k, seed=int(cfg.seed),
                       preset=p.name, method_options=options, dataset_options=given.dataset_options,
                       model=p.model, train=train, config=cfg, fid_reference=reference)


def full_codebook_size(method: str, dim: int, options: Any, shared: Callable[[], int] | None = None) -> int:
    """K of `--codebook-sizes full`: the method's whole vocabulary; for a method without one, the preset's
    `shared` vocabulary size where it has one (vqct-official), else an error."""
    import methods

    k = methods.entry(method).cls.full_codebook_size(dim, options)
    if k is None and shared is not None:
        return int(shared())
    if k is None:
        raise UserError(f"method {method!r} has no vocabulary, so codebook size 'full' means nothing for it; "
                        "give a number (--codebook-sizes 1024), or use 'full' with a method whose codes are words "
                        "(vqct)")
    return int(k)


def _check_batch(name: str, train: TrainPreset, workers: int) -> None:
    """The global batch must split evenly into workers x accumulation steps x micro-batches."""
    micro = train.micro_batch or train.batch_size // workers
    if micro < 1 or train.batch_size % (micro * workers):
        raise UserError(f"preset {name!r}: its global batch of {train.batch_size} does not split into {workers} "
                        f"workers x micro-batches of {micro}; choose a number of workers that divides "
                        f"{train.batch_size // (train.micro_batch or 1)}")


def dataset_path(cfg: RunConfig) -> str | None:
    """The --dataset-path given for this config's dataset (keys may be aliases)."""
    import datasets

    name = datasets.canonical_name(cfg.dataset)
    for key, path in cfg.dataset_paths.items():
        if datasets.canonical_name(key) == name:
            return path
    return None
