"""The frozen tokenizer of a finished run, and its token cache: every image of a split encoded once
into its index grid and kept in the tokenizer's run folder (`prior_tokens_<split>.npz`), with the
labels where the dataset has them.

The images are the split as the tokenizer's run reads it, except that datasets read from files take
their centre crop without flips (`train_crop="center"`, `hflip=False`): the prior learns, and the
generation reference describes, one fixed view of each training image. (A preprocessing `recipe`
in the run's dataset options sets its own crop; the view used is recorded either way.)

A cache is reused only when it was made from the same checkpoint (sha1 of the file), the same split
(its protocol and size) and in the evaluation precision; otherwise it is encoded again and replaced
atomically. Encoding is evaluation of the tokenizer: float32 with TF32 off on every device, as the
evaluator (bench.evaluation.precision); caches made before that (bf16 autocast on CUDA) carry no
precision and are encoded again.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

import datasets
from bench.core import run_folder
from bench.core.atomic import atomic_path
from bench.core.errors import UserError
from bench.core.hashing import file_digest
from bench.core.images import to_float
from bench.evaluation.precision import TAG as EVALUATION_PRECISION
from bench.evaluation.precision import evaluation_precision
from bench.generation import folder
from bench.generation.layout import TokenLayout
from bench.models.autoencoder import VQAutoencoder
from bench.runs import records
from bench.runs.config import ResolvedRun, RunConfig, resolve
from bench.runs.presets import ModelPreset
from bench.training.checkpoint import load_checkpoint
from bench.training.step import build_model
from datasets.base import ImageDataset

CACHE_VERSION = 1  # bump when the cache's content changes, so old caches are encoded again
ENCODE_BATCH = 64


@dataclass
class Tokenizer:
    """A finished tokenizer run, loaded: its model (eval mode, frozen), resolved config and record."""

    model: VQAutoencoder
    run: ResolvedRun
    record: dict[str, Any]
    run_dir: Path
    checkpoint_sha1: str

    @property
    def run_id(self) -> str:
        return self.record["run_id"]

    @property
    def vocab_size(self) -> int:
        return self.model.quantizer.codebook_size

    @torch.no_grad()
    def decode(self, indices: Tensor) -> Tensor:
        """Index grids (B, H, W[, L]) -> float images in [-1, 1], through the quantizer's decode_indices,
        in float32 with TF32 off (the images go to the generation metrics)."""
        with evaluation_precision(self.device.type):
            return self.model.decode_indices(indices.to(self.device))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def load_tokenizer(run_dir: Path | str, device: torch.device, data_root: str | None = None,
                   dataset_paths: dict[str, str] | None = None) -> Tokenizer:
    """The tokenizer of a finished run folder. The architecture comes from the record's own config, so
    a checkpoint stays loadable when a preset changes later; the data options are resolved (and the
    dataset's folder found) as for the run itself. `data_root` defaults to the one the run recorded."""
    run_dir = Path(run_dir)
    record = records.read_record(run_dir)
    if record is None:
        raise UserError(f"{run_dir} has no record: the tokenizer run has not finished")
    if record.get("status") != records.FINISHED:
        raise UserError(f"tokenizer run {record.get('run_id')} is {record.get('status')}, not finished")
    c = record["config"]
    cfg = RunConfig(method=c["method"], dataset=c["dataset"], codebook_size=c["codebook_size"], seed=c["seed"],
                    preset=c["preset"], steps=c["steps"], method_options=dict(c.get("method_options") or {}),
                    dataset_options=dict(c.get("dataset_options") or {}),
                    data_root=data_root if data_root is not None else record.get("data_root"),
                    dataset_paths=dict(dataset_paths or {}), device=str(device))
    run = resolve(cfg)
    model_fields = {f.name for f in dataclasses.fields(ModelPreset)}
    arch = {k: tuple(v) if isinstance(v, list) else v for k, v in c["model"].items() if k in model_fields}
    run = dataclasses.replace(run, model=ModelPreset(**arch))
    ckpt = run_dir / run_folder.CHECKPOINT
    if not ckpt.is_file():
        raise UserError(f"tokenizer run {record['run_id']} has no checkpoint ({ckpt})")
    torch.manual_seed(run.seed)  # some quantizers draw buffers at construction; the checkpoint replaces them
    model = build_model(run).to(device)
    rng = torch.get_rng_state()
    load_checkpoint(ckpt, {"model": model}, {}, device)
    torch.set_rng_state(rng)  # loading a checkpoint restores the training RNG; the prior keeps its own
    model.eval().requires_grad_(False)
    return Tokenizer(model, run, record, run_dir, file_digest(ckpt))


def view_dataset(tok: Tokenizer, split: str) -> ImageDataset:
    """The split in the fixed view of the module docstring."""
    run = tok.run
    options = run.data_options()
    if datasets.entry(run.dataset).reads_files:
        options.update(train_crop="center", hflip=False)
    return datasets.create(run.dataset, split, run.model.resolution, run.config.data_root, **options)


@dataclass
class TokenSet:
    """Index grids of one split, int64 (N, *index_shape), and labels (N,) where the dataset has them."""

    indices: Tensor
    labels: Tensor | None
    label_names: list[str] | None
    layout: TokenLayout
    meta: dict[str, Any]
    cached: bool  # read from the cache rather than encoded now

    @property
    def num_classes(self) -> int:
        return len(self.label_names) if self.label_names else 0

    def sequences(self) -> Tensor:
        return self.layout.to_sequence(self.indices)


def _cache_key(tok: Tokenizer, ds: ImageDataset, split: str) -> dict[str, Any]:
    protocol = json.loads(json.dumps(getattr(ds, "protocol", {}), sort_keys=True, default=str))
    for live in ("images_read", "bad_images_skipped", "bad_image_examples", "upscaled_images", "upscaled_examples"):
        protocol.pop(live, None)  # counts that grow while the split is read, not what the split is
    return {"version": CACHE_VERSION, "tokenizer_run_id": tok.run_id, "checkpoint_sha1": tok.checkpoint_sha1,
            "split": split, "n_images": len(ds), "protocol": protocol, "precision": EVALUATION_PRECISION}


def token_set(tok: Tokenizer, split: str, ds: ImageDataset | None = None, progress: bool = False) -> TokenSet:
    """The split's tokens from the tokenizer's run folder, encoding (and caching) them when needed."""
    ds = ds if ds is not None else view_dataset(tok, split)
    key = _cache_key(tok, ds, split)
    path = tok.run_dir / folder.token_cache_name(split)
    found = _read(path, key, tok.vocab_size)
    if found is not None:
        return found
    t0 = time.perf_counter()
    indices = encode(tok.model, ds, tok.device, tok.run.train.num_workers, progress)
    raw_labels, raw_names = getattr(ds, "labels", None), getattr(ds, "label_names", None)
    labels = None if raw_labels is None else torch.as_tensor(list(raw_labels), dtype=torch.long)
    names = None if raw_names is None else list(raw_names)
    layout = TokenLayout.of(indices, tok.vocab_size)
    meta = {**key, "index_shape": list(layout.index_shape), "vocab_size": layout.vocab_size, "label_names": names,
            "encode_s": time.perf_counter() - t0, "device": tok.device.type,
            "view": "centre crop, no flip" if datasets.entry(tok.run.dataset).reads_files
            else "as the dataset gives it (no augmentation)"}
    store = np.int16 if tok.vocab_size <= np.iinfo(np.int16).max else np.int32
    arrays = {"indices": indices.numpy().astype(store), "meta": np.array(json.dumps(meta))}
    if labels is not None:
        arrays["labels"] = labels.numpy()
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    return TokenSet(indices, labels, names, layout, meta, cached=False)


def _read(path: Path, key: dict[str, Any], vocab_size: int) -> TokenSet | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if {k: meta.get(k) for k in key} != key:
                return None
            indices = torch.from_numpy(z["indices"].astype(np.int64))
            labels = torch.from_numpy(z["labels"].astype(np.int64)) if "labels" in z.files else None
    except (OSError, ValueError, KeyError):
        return None  # unreadable: encode again and replace it
    layout = TokenLayout(tuple(meta["index_shape"]), vocab_size)
    return TokenSet(indices, labels, meta.get("label_names"), layout, meta, cached=True)


@torch.no_grad()
def encode(model: VQAutoencoder, ds: ImageDataset, device: torch.device, num_workers: int = 0,
           progress: bool = False) -> Tensor:
    """Index grids of every image of `ds`, in order, int64 on the CPU, in float32 with TF32 off as the
    evaluator (bench.evaluation.precision); a bf16 encoder flipped 0.3% of a vqgan's indices."""
    from tqdm import tqdm

    model.eval()
    out = []
    loader = DataLoader(ds, batch_size=ENCODE_BATCH, shuffle=False, num_workers=num_workers)
    for batch in tqdm(loader, desc="encode", disable=not progress, leave=False):
        with evaluation_precision(device.type):
            q = model.encode(to_float(batch.to(device)))
        out.append(q.indices.long().cpu())
    return torch.cat(out)


def reference_images(ds: ImageDataset, limit: int, seed: int = 0) -> tuple[Tensor, list[int]]:
    """uint8 images of the split for the generation reference: all of them, or `limit` chosen by a
    seeded permutation, kept in split order (fid_reference.sample_images, which --fid-reference
    train:N draws with too)."""
    from bench.evaluation.metrics.fid_reference import sample_images

    return sample_images(ds, limit, seed)
