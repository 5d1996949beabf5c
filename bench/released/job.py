"""The grid job "evaluate a released checkpoint on a dataset": `ReleasedEval` is what a user asks for
(the counterpart of a trained run's RunConfig), `ResolvedEval` its validated form, whose hash is the
run id.

Why a second job kind rather than a RunConfig: a released tokenizer has no preset, no training and
no seed, and its identity is the bytes of its files. The scheduler (bench.scheduling.plan) takes
any config object with `resolve()` and `run(out, force, progress)` beside RunConfig, so a grid of
released checkpoints goes through the same backends (local, Ray) and the same skip-if-finished test
(`finished_record`, by run id) as trained runs.

The checkpoint is loaded once by the driver before the grid starts (bench.cli.eval): that is where a
missing file, an unknown kind, a missing or misshapen key or a pickle that needs code stops the
command, before any run folder exists. The driver's description of what it loaded (method, K, the
SHA-256 of every file) travels in the config, so `resolve()` never reads the checkpoint again and
the run id names the exact bytes: a finished record for the same files, dataset and evaluation
settings is skipped; a changed file is a new run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.core.errors import UserError

DEFAULT_EVAL_BATCH_SIZE = 64  # the presets' eval batch size (the results do not depend on it)


@dataclass(frozen=True)
class EvalImages:
    """What the scheduler's per-machine preparation reads of a run's model preset: the image size the
    validation split is built at (and the code dimension, which it keys method caches by)."""

    resolution: int
    embed_dim: int


@dataclass
class ReleasedEval:
    """One cell of an `eval` grid: one released checkpoint on one dataset."""

    kind: str  # bench.released.kinds()
    path: str  # the checkpoint (vqbench: a run folder or its checkpoint.safetensors)
    description: dict[str, Any]  # load_released(...).description, made by the driver when it validated the files
    dataset: str = "photos"
    config_path: str | None = None  # taming/vqct YAML, vqbench record.json; None: found beside the checkpoint
    prior_path: str | None = None  # vqct's word-prior pickle; None: found beside the checkpoint or config
    resolution: int | None = None  # evaluation resolution; None: the tokenizer's own training resolution
    eval_batch_size: int = DEFAULT_EVAL_BATCH_SIZE
    num_workers: int = 0  # DataLoader workers
    perceptual_metrics: bool = True  # LPIPS, rFID, KID (off: None in the record, the reason in its protocol)
    fid_reference: str = "val"  # --fid-reference (fid_reference_choice); in the id when not val
    dataset_options: dict[str, Any] = field(default_factory=dict)  # change the images: part of the run id
    data_root: str | None = None
    dataset_paths: dict[str, str] = field(default_factory=dict)  # as RunConfig's: where, not what (not in the id)
    dataset_cache: bool = False
    skip_bad_images: bool = False
    device: str | None = None  # None: cuda when available, else cpu (not in the id)
    # RunConfig's fields the scheduler reads of every job: no torch.compile, one process per run
    compile: bool = False
    workers: int = 1

    def resolve(self) -> ResolvedEval:
        """Validate what can be known without the checkpoint (dataset, its options and folder, the
        evaluation settings) and fix the run id. A UserError before any work."""
        import datasets
        from bench.runs.config import dataset_path

        d = self.description
        for key in ("kind", "sha256", "files", "method", "codebook_size", "embed_dim", "resolution", "model"):
            if key not in d:
                raise UserError(f"released checkpoint {self.path}: its description lacks {key!r}; pass the "
                                "description bench.released.load_released gives")
        resolution = d["resolution"] if self.resolution is None else self.resolution
        for name, value, least in (("resolution", resolution, 8), ("eval batch size", self.eval_batch_size, 1),
                                   ("DataLoader workers", self.num_workers, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise UserError(f"{name} must be an integer >= {least}, got {value!r}")
        factor = 2 ** (len(d["model"]["ch_mult"]) - 1)
        if resolution % factor:
            raise UserError(f"resolution {resolution} is not a multiple of the tokenizer's downsampling factor "
                            f"{factor}; choose --resolution {resolution // factor * factor or factor}")
        dataset = datasets.canonical_name(self.dataset)
        datasets.check_options(dataset, self.dataset_options)
        datasets.locate(dataset, self.data_root, dataset_path(self))  # a missing folder fails before any work
        from bench.evaluation.metrics import fid_reference_choice

        reference = fid_reference_choice.parse(self.fid_reference)  # a bad statistics file stops here
        return ResolvedEval(dataset=dataset, resolution=int(resolution), dataset_options=dict(self.dataset_options),
                            config=self, fid_reference=reference)

    def run(self, out: Any, force: bool = False, progress: bool = True) -> dict[str, Any]:
        """The job: evaluate and record (bench.released.evaluate.evaluate_released)."""
        from bench.released.evaluate import evaluate_released

        return evaluate_released(self, out, force=force, progress=progress)


@dataclass(frozen=True)
class ResolvedEval:
    """A validated ReleasedEval: the record's `config`, the run id, and what the scheduler reads of a
    resolved run (dataset, model.resolution, data_options(), describe(), run_id)."""

    dataset: str  # canonical
    resolution: int
    dataset_options: dict[str, Any]
    config: ReleasedEval
    seed: int = 0  # datasets take a crop seed; the validation split is read the same for every seed
    prepares_method: bool = False  # no method cache to build: the codebook comes from the checkpoint's files
    splits: tuple[str, ...] = ("val",)  # what the scheduler prepares (--fid-reference train:N reads its own)
    fid_reference: Any = None  # fid_reference_choice.ReferenceChoice; None: val

    @property
    def description(self) -> dict[str, Any]:
        return self.config.description

    @property
    def method(self) -> str:
        return self.description["method"]

    @property
    def codebook_size(self) -> int:
        return int(self.description["codebook_size"])

    @property
    def model(self) -> EvalImages:
        return EvalImages(self.resolution, int(self.description["embed_dim"]))

    def checkpoint(self) -> dict[str, Any]:
        """The record's `checkpoint`: which file, by kind and content."""
        return {"kind": self.description["kind"], "path": self.description.get("path", self.config.path),
                "sha256": self.description["sha256"]}

    def record_keys(self) -> dict[str, Any]:
        """The top-level keys its record has beyond a trained run's, finished or failed, whoever writes it
        (the evaluation, or the driver for a worker that died): tables tell released rows by `source`."""
        from bench.released.load import SOURCE

        return {"source": SOURCE, "checkpoint": self.checkpoint(), "released": self.description}

    def to_dict(self) -> dict[str, Any]:
        """The record's `config`: a trained run's fields where they mean the same (method, dataset,
        codebook_size, method_options, dataset_options, model), `preset` naming the kind so that
        tables never average a released row with trained ones, and no training. Hashed into the id
        with the SHA-256 of every file read."""
        d = self.description
        return {
            "method": d["method"],
            "dataset": self.dataset,
            "codebook_size": int(d["codebook_size"]),
            "seed": self.seed,
            "preset": f"released-{d['kind']}",
            "steps": None,
            "method_options": d.get("method_options", {}),
            "dataset_options": dict(self.dataset_options),
            "model": {**d["model"], "embed_dim": int(d["embed_dim"])},
            "train": None,
            "eval": {"resolution": self.resolution, "perceptual_metrics": bool(self.config.perceptual_metrics),
                     # only when not val: the ids of evaluations from before the option are unchanged
                     **({"fid_reference": self.fid_reference.run_id_value}
                        if self.fid_reference is not None and self.fid_reference.fixed else {})},
            "checkpoint": {"kind": d["kind"], "sha256": d["sha256"],
                           "files": {role: f["sha256"] for role, f in sorted(d["files"].items())}},
        }

    @property
    def run_id(self) -> str:
        """released-<kind>-<method>-<dataset>-K<K>-<hash of to_dict()>: equal files and settings, equal ids."""
        from bench.runs.config import config_digest, dataset_slug

        return (f"released-{self.description['kind']}-{self.method}-{dataset_slug(self.dataset)}-K{self.codebook_size}-"
                f"{config_digest(self.to_dict())}")

    def data_options(self) -> dict[str, Any]:
        """Keyword options of `datasets.create`, as ResolvedRun.data_options gives them."""
        from bench.runs.config import dataset_path

        c = self.config
        return dict(self.dataset_options, path=dataset_path(c), seed=self.seed, cache=c.dataset_cache,
                    skip_bad_images=c.skip_bad_images)

    def describe(self) -> str:
        d = self.description
        return f"released {d['kind']} {d['method']} K={self.codebook_size} on {self.dataset} ({d['sha256'][:12]})"
