"""`run_prior(tokenizer_run_dir, prior_config, out)`: a prior for one finished tokenizer run, end to
end, to a record. Stages, each resumable from what the folder already holds:

1. tokens: the tokenizer's training and held-out splits encoded once (cached in its run folder);
2. training: the prior, from its last checkpoint (same weights as an uninterrupted run);
3. sampling: `eval.n_samples` sequences in batches, each batch seeded by (prior seed, batch index) and
   written to its own file with its Inception features, so a resumed run samples only the missing
   batches and gets the same images;
4. metrics: gFID, KID, precision and recall against the training split's reference statistics (the
   FID reference cache), a 95% bootstrap interval of gFID and KID over the samples (replicates kept
   in the folder, bench.generation.bootstrap), Inception Score or why not, held-out NLL, optional
   baselines; a sample grid;
5. the record (bench.generation.record), written atomically.

As `run_one`: a finished record is returned as it is (marked "skipped": True) unless `force`; any
failure after the folder exists becomes a failed record; an interruption leaves the folder without a
record, and the next call resumes. A tokenizer run without a finished record gives a record with
status "skipped" and the reason, so a scheduler can call this for every cell.
"""
from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

import datasets
from bench.core.atomic import atomic_path
from bench.core.images import to_uint8
from bench.evaluation.metrics import fid
from bench.evaluation.precision import DESCRIPTION as EVALUATION_PRECISION
from bench.generation import bootstrap, folder, tokenizer_rfid
from bench.generation import metrics as gm
from bench.generation.config import PriorConfig, prior_preset
from bench.generation.layout import TokenLayout
from bench.generation.record import FAILED, FINISHED, SKIPPED, PriorRecord, read_prior_record
from bench.generation.sampling import batch_generator, class_labels, sample, sampling_precision
from bench.generation.tokens import Tokenizer, load_tokenizer, reference_images, token_set, view_dataset
from bench.generation.train import build_prior, mean_nll, train_prior
from bench.generation.transformer import TokenPrior
from bench.reporting import intervals
from bench.runs import held_lease, lease, records
from bench.runs.cuda_memory import limit_to_share, ray_gpu_share
from bench.training import determinism
from bench.training.loop import pick_device

REFERENCE_SEED = 0  # which training images make a capped reference set (fixed: one reference per split)


def run_prior(tokenizer_run_dir: Path | str, prior_config: PriorConfig | str, out: Path | str, *,
              force: bool = False, progress: bool = True, device: str | None = None, data_root: str | None = None,
              dataset_paths: dict[str, str] | None = None, deterministic: bool = False,
              on_checkpoint: Callable[[int], None] | None = None) -> dict[str, Any]:
    """The prior run's record (dict); see the module docstring. `prior_config` is a PriorConfig or a
    prior preset name. `data_root` / `dataset_paths` say where the tokenizer's data is when it moved
    (default: the data root its record names). `deterministic` is the tokenizer grid's --deterministic
    (bench.training.determinism). The prior's folder is leased while it works (bench.runs.held_lease): a
    second driver on the same results folder waits for it and then finds its record."""
    cfg = prior_preset(prior_config) if isinstance(prior_config, str) else prior_config
    cfg.check()
    tok_dir = Path(tokenizer_run_dir)
    tok_record = records.read_record(tok_dir)
    run_id = tok_record["run_id"] if tok_record else tok_dir.name
    pid = folder.prior_id(run_id, cfg.preset, cfg.seed, cfg.to_dict())
    pdir = folder.prior_dir(out, pid)
    if not force:  # a finished prior needs no lease to be read
        existing = read_prior_record(pdir)
        if existing is not None and existing.get("status") == FINISHED:
            return {**existing, "skipped": True}
    with held_lease.hold(pdir, f"prior {pid}") as took_over:
        return _leased(pid, pdir, cfg, tok_dir, tok_record, out, force, progress, device, data_root, dataset_paths,
                       deterministic, took_over, on_checkpoint)


def _leased(pid: str, pdir: Path, cfg: PriorConfig, tok_dir: Path, tok_record: dict[str, Any] | None, out: Path | str,
            force: bool, progress: bool, device: str | None, data_root: str | None,
            dataset_paths: dict[str, str] | None, deterministic: bool, took_over: dict[str, Any] | None,
            on_checkpoint: Callable[[int], None] | None) -> dict[str, Any]:
    """run_prior's work, under the prior folder's lease."""
    run_id = tok_record["run_id"] if tok_record else tok_dir.name
    existing = read_prior_record(pdir)  # again: another driver may have finished it while this one waited
    if existing is not None and existing.get("status") == FINISHED and not force:
        return {**existing, "skipped": True}
    if force:
        lease.clear_run_folder(pdir)  # start over, keeping the lease this process holds
    elif existing is not None:
        (pdir / folder.RECORD).unlink()  # failed or skipped: redone, resuming from what the folder holds
    pdir.mkdir(parents=True, exist_ok=True)
    dev = pick_device(device)
    deterministic = determinism.configure(deterministic, dev)  # before the prior's first CUDA call
    share = limit_to_share(dev, ray_gpu_share())  # a packed GPU prior keeps to its share, as a tokenizer run
    record = PriorRecord(pid, FINISHED, _tokenizer_summary(tok_record, tok_dir), cfg.to_dict(),
                         overrides=dict(cfg.overrides), versions=records.versions(), device=str(dev),
                         torch_threads=torch.get_num_threads(), deterministic=deterministic,
                         gpu_memory_fraction=share, lease_taken_over=took_over)
    t0 = time.perf_counter()
    if tok_record is None or tok_record.get("status") != records.FINISHED:
        record.status = SKIPPED
        record.error = (f"tokenizer run {run_id} is {tok_record.get('status')!r}, not finished" if tok_record
                        else f"tokenizer run folder {tok_dir} has no record")
    else:
        try:
            _run(record, cfg, tok_dir, pdir, dev, progress, data_root, dataset_paths, on_checkpoint)
        except KeyboardInterrupt:
            raise  # interrupted, not failed: no record, the next call resumes
        except Exception as exc:  # noqa: BLE001 - every failure of the prior becomes its record
            record.status, record.error = FAILED, f"{type(exc).__name__}: {exc}"
            record.traceback = traceback.format_exc()
            record.metrics = {k: None for k in gm.METRIC_KEYS}
    record.wall_s = time.perf_counter() - t0
    record.write(out)
    return record.to_json()


def _tokenizer_summary(rec: dict[str, Any] | None, run_dir: Path) -> dict[str, Any]:
    if rec is None:
        return {"run_id": run_dir.name, "run_dir": str(run_dir), "status": None}
    c = rec.get("config", {})
    return {"run_id": rec.get("run_id"), "run_dir": str(run_dir), "status": rec.get("status"),
            **{k: c.get(k) for k in ("method", "dataset", "codebook_size", "seed", "preset", "steps")},
            "rfid": (rec.get("metrics") or {}).get("fid"), "tokens": rec.get("tokens"),
            "indices_per_image": rec.get("indices_per_image")}


def _run(record: PriorRecord, cfg: PriorConfig, tok_dir: Path, pdir: Path, device: torch.device, progress: bool,
         data_root: str | None, dataset_paths: dict[str, str] | None,
         on_checkpoint: Callable[[int], None] | None) -> None:
    timings = record.timings
    t = time.perf_counter()
    tok = load_tokenizer(tok_dir, device, data_root, dataset_paths)
    record.tokenizer["checkpoint_sha1"] = tok.checkpoint_sha1
    train_ds = view_dataset(tok, "train")
    train = token_set(tok, "train", train_ds, progress)
    val = token_set(tok, "val", progress=progress)
    timings["tokens_s"] = time.perf_counter() - t
    conditional = _conditional(cfg, train.labels is not None and train.num_classes > 0, tok.run.dataset)
    num_classes = train.num_classes if conditional else 0
    layout = train.layout
    record.layout, record.conditional = layout.describe(), conditional
    record.num_classes, record.label_names = num_classes, (train.label_names if conditional else None)

    t = time.perf_counter()
    prior = build_prior(cfg, layout.vocab_size, layout.length, num_classes).to(device)
    record.parameters = prior.parameter_count()
    result = train_prior(prior, cfg, train.sequences(), train.labels if conditional else None, pdir, device,
                         progress, on_checkpoint)
    record.steps_done, record.resumed_from = result.steps, result.resumed_from
    record.checkpoint_discarded, record.final_train_logs = result.discarded_checkpoint, result.last_logs
    timings["train_s"] = time.perf_counter() - t
    metrics: dict[str, Any] = {k: None for k in gm.METRIC_KEYS}
    metrics[gm.VAL_NLL] = mean_nll(prior, val.sequences(), val.labels if conditional else None, device)

    t = time.perf_counter()
    extractor = gm.generation_extractor(device) if cfg.eval.inception_metrics else None
    tokens, labels, feats, logits = generate(prior, tok, layout, cfg, pdir, extractor, num_classes, device, progress)
    save_grid(decode_images(tok, layout, tokens[: cfg.eval.grid_images], cfg.sampling.batch_size),
              pdir / folder.GRID)
    timings["sample_s"] = time.perf_counter() - t

    t = time.perf_counter()
    protocol: dict[str, Any] = {
        "tokens": {"split": "train", "n_sequences": len(train.indices), "view": train.meta.get("view"),
                   "dataset_protocol": train.meta.get("protocol"), "cached": train.cached,
                   "held_out": {"split": "val", "n_sequences": len(val.indices)}},
        "sampling": {**record.config["sampling"], "n_samples": len(tokens), "seeding": "batch b: (prior seed, b)",
                     "labels": "sample i gets class i mod C" if conditional else None,
                     "guidance": "logits_u + s (logits_c - logits_u), null class = dropped label" if conditional
                     else None, "precision": sampling_precision(device)},
        # Token extraction, decoding and every Inception feature (bench.evaluation.precision).
        "evaluation_precision": EVALUATION_PRECISION,
        "val_nll": "mean cross-entropy in nats per token over the held-out split's token grids",
    }
    if extractor is None:
        why = "switched off for this prior preset (eval.inception_metrics=False)"
        protocol["fid"] = {"skipped": why}
        protocol["inception_score"] = {"available": False, "why": why}
    else:
        protocol.update(_inception_metrics(metrics, cfg, tok, layout, train, train_ds, extractor, feats, logits,
                                           device, pdir))
    record.metrics, record.protocol = metrics, protocol
    timings["metrics_s"] = time.perf_counter() - t


def _conditional(cfg: PriorConfig, has_labels: bool, dataset: str) -> bool:
    from bench.core.errors import UserError

    if cfg.class_conditional is None:
        return has_labels
    if cfg.class_conditional and not has_labels:
        raise UserError(f"class_conditional=True, but dataset {dataset!r} has no labels in its training split")
    return bool(cfg.class_conditional)


# --- sampling ---------------------------------------------------------------------------------------


def decode_images(tok: Tokenizer, layout: TokenLayout, tokens: Tensor, batch_size: int) -> Tensor:
    """uint8 images of token sequences, through the tokenizer's decode_indices, in float32."""
    out = [to_uint8(tok.decode(layout.from_sequence(tokens[i : i + batch_size]))).cpu()
           for i in range(0, len(tokens), batch_size)]
    return torch.cat(out) if out else torch.zeros((0, 3, 1, 1), dtype=torch.uint8)


def generate(prior: TokenPrior, tok: Tokenizer, layout: TokenLayout, cfg: PriorConfig, pdir: Path,
             extractor: gm.GenerationExtractor | None, num_classes: int, device: torch.device,
             progress: bool = False) -> tuple[Tensor, Tensor | None, np.ndarray | None, np.ndarray | None]:
    """(tokens (N, T), labels, features, logits) of all N = eval.n_samples samples. Batches already on
    disk are read back, the others sampled and written; everything returned comes from the files, so
    an interrupted run and an uninterrupted one return the same numbers."""
    bs, n = cfg.sampling.batch_size, cfg.eval.n_samples
    sdir = pdir / folder.SAMPLES
    sdir.mkdir(exist_ok=True)
    parts = []
    for b in tqdm(range(-(-n // bs)), desc="sample", disable=not progress, leave=False):
        start, size = b * bs, min(bs, n - b * bs)
        path = sdir / folder.sample_batch_name(b)
        part = _read_batch(path, size, layout.length)
        changed = part is None
        if part is None:
            labels = class_labels(start, size, num_classes)
            tokens = sample(prior, size, cfg.sampling, batch_generator(cfg.seed, b, device), labels, device).cpu()
            part = {"tokens": tokens.numpy().astype(np.int32)}
            if labels is not None:
                part["labels"] = labels.numpy()
        if extractor is not None and ("features" not in part or
                                      (extractor.logits_model is not None and "logits" not in part)):
            # features are kept in float32, and only what the file holds is used (see the docstring)
            images = decode_images(tok, layout, torch.from_numpy(part["tokens"].astype(np.int64)), bs)
            feats, logits = extractor(images)
            part["features"] = feats.astype(np.float32)
            if logits is not None:
                part["logits"] = logits.astype(np.float32)
            changed = True
        if changed:
            with atomic_path(path, suffix=".npz") as tmp:
                np.savez(tmp, **part)
        parts.append(part)
    tokens = torch.from_numpy(np.concatenate([p["tokens"] for p in parts]).astype(np.int64))
    labels = (torch.from_numpy(np.concatenate([p["labels"] for p in parts])) if "labels" in parts[0] else None)
    feats = np.concatenate([p["features"] for p in parts]).astype(np.float64) if extractor is not None else None
    logits = (np.concatenate([p["logits"] for p in parts]).astype(np.float64)
              if extractor is not None and extractor.logits_model is not None else None)
    return tokens, labels, feats, logits


def _read_batch(path: Path, size: int, length: int) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            part = {k: z[k] for k in z.files}
    except (OSError, ValueError):
        return None  # torn or unreadable: sampled again (same seed, same tokens)
    if part.get("tokens") is None or part["tokens"].shape != (size, length):
        return None
    return part


def save_grid(images: Tensor, path: Path, per_row: int = 8) -> None:
    """uint8 (N, 3, R, R) images in rows of `per_row` (the last row padded black)."""
    if len(images) == 0:
        return
    n, c, h, w = images.shape
    rows = -(-n // per_row)
    canvas = torch.zeros((c, rows * h, min(n, per_row) * w), dtype=torch.uint8)
    for i, img in enumerate(images):
        r, col = divmod(i, per_row)
        canvas[:, r * h : (r + 1) * h, col * w : (col + 1) * w] = img
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(np.ascontiguousarray(canvas.permute(1, 2, 0).numpy())).save(tmp, format="PNG")


# --- metrics ----------------------------------------------------------------------------------------


def reference_protocol(tok: Tokenizer, train_ds: Any) -> dict[str, Any]:
    """The key of the training split's reference statistics in the FID cache: the split is named by
    its view, so it never shares a cache entry with statistics of differently cropped images."""
    base = dict(getattr(train_ds, "protocol", {}) or {})
    view = "train-center-noflip" if datasets.entry(tok.run.dataset).reads_files else "train"
    return {"dataset": base.get("dataset", tok.run.dataset), "split": view,
            "resolution": base.get("resolution", tok.run.model.resolution)}


def _inception_metrics(metrics: dict[str, Any], cfg: PriorConfig, tok: Tokenizer, layout: TokenLayout, train: Any,
                       train_ds: Any, extractor: gm.GenerationExtractor, feats: np.ndarray,
                       logits: np.ndarray | None, device: torch.device, pdir: Path) -> dict[str, Any]:
    images, chosen = reference_images(train_ds, cfg.eval.reference_images, REFERENCE_SEED)
    ref_key = reference_protocol(tok, train_ds)
    ref = gm.reference_statistics(images, ref_key, device, extractor.fid_extractor)
    del images
    dist, dist_protocol = gm.distribution_metrics(ref, feats, cfg.eval.precision_recall_k, device)
    metrics.update(dist)
    interval_protocol = _interval(metrics, feats, ref, pdir)
    out: dict[str, Any] = {
        "fid": {"generated": len(feats), "reference": {**ref_key, "n_images": len(chosen), "of": len(train_ds),
                                                        "subset_seed": REFERENCE_SEED if len(chosen) < len(train_ds)
                                                        else None, "cached": ref.cached,
                                                        "file": ref.path.name if ref.path else None},
                "rank_deficient": min(len(feats), len(chosen)) < fid.MIN_FULL_RANK,
                **extractor.fid_extractor.describe()},
        **dist_protocol,
        "interval": interval_protocol,
    }
    if logits is not None and len(logits) >= gm.IS_SPLITS:
        metrics[gm.IS], metrics[gm.IS_STD] = gm.inception_score(logits)
        out["inception_score"] = {"available": True, "splits": gm.IS_SPLITS, "shuffle_seed": gm.IS_SHUFFLE_SEED,
                                  "layer": gm.LOGITS_LAYER, "weights": extractor.fid_extractor.weights.source}
    else:
        why = extractor.is_unavailable or f"{len(logits)} samples, fewer than its {gm.IS_SPLITS} splits"
        out["inception_score"] = {"available": False, "why": why}
    if tokenizer_rfid.needed(tok.record, cfg.eval.tokenizer_rfid_images):
        metrics[gm.TOKENIZER_RFID], out["tokenizer_rfid"] = tokenizer_rfid.measure(
            tok, extractor, cfg.eval.tokenizer_rfid_images, pdir, cfg.sampling.batch_size)
    if cfg.eval.baselines:
        metrics[gm.GFID_RANDOM], metrics[gm.GFID_TRAIN_TOKENS], out["baselines"] = _baselines(
            cfg, tok, layout, train, extractor, ref)
    return out


def _interval(metrics: dict[str, Any], feats: np.ndarray, ref: Any, pdir: Path) -> dict[str, Any]:
    """gFID's and KID's 95% bootstrap interval into `metrics`, the replicates into the prior folder
    (bench.generation.bootstrap); its protocol entry, or why there is none."""
    name = ref.path.name if ref.path else None
    reps, why = bootstrap.compute(feats, ref.mu, ref.sigma, ref.features)
    if reps is None:
        return {"skipped": why}
    bootstrap.save(pdir, reps, bootstrap.digest(feats, name))
    for key, lo, hi in ((gm.GFID, gm.GFID_LO, gm.GFID_HI), (gm.GKID, gm.GKID_LO, gm.GKID_HI)):
        iv = reps.interval(key, metrics[key])
        metrics[lo], metrics[hi] = (iv.low, iv.high) if iv else (None, None)
    return {"level": intervals.LEVEL, "kind": bootstrap.DESCRIPTION, "resamples": intervals.FEATURE_RESAMPLES,
            "seed": intervals.BOOTSTRAP_SEED, "n_samples": reps.n_samples, "file": folder.BOOTSTRAP,
            "metrics": [gm.GFID, gm.GKID], "point_values": [gm.PRECISION, gm.RECALL, gm.IS]}


def _baselines(cfg: PriorConfig, tok: Tokenizer, layout: TokenLayout, train: Any,
               extractor: gm.GenerationExtractor, ref: Any) -> tuple[float, float, dict[str, Any]]:
    """gFID of uniformly random tokens (no prior at all) and of decoded training grids (a prior that
    reproduced its training data), each over eval.n_samples images, seeded by the prior seed."""
    n, bs = cfg.eval.n_samples, cfg.sampling.batch_size
    g = torch.Generator().manual_seed(cfg.seed)
    random_tokens = torch.randint(0, layout.vocab_size, (n, layout.length), generator=g)
    pick = torch.randint(0, len(train.indices), (n,), generator=g) if n > len(train.indices) else \
        torch.randperm(len(train.indices), generator=g)[:n]
    train_tokens = train.sequences()[pick]
    scores = []
    for tokens in (random_tokens, train_tokens):
        feats = np.concatenate([extractor(decode_images(tok, layout, tokens[i : i + bs], bs))[0]
                                for i in range(0, n, bs)])
        scores.append(gm.gfid_only(ref, feats.astype(np.float32).astype(np.float64)))
    return scores[0], scores[1], {"random_tokens": "uniform over [0, K) at every token",
                                  "train_tokens": f"{n} training grids, decoded (sampled with replacement when fewer)",
                                  "n_images": n}
