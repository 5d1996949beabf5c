"""The tokenizer's rFID, measured by the prior stage when the tokenizer's own record has none.

The `smoke` tokenizer preset computes no Inception features (its evaluation would otherwise run
Inception over every held-out image, minutes on a CPU, in every smoke run and every test that
trains one). A prior with `eval.tokenizer_rfid_images` > 0 then measures the tokenizer's rFID itself,
so a `--generate` table shows generation FID beside reconstruction FID: on that many seeded held-out
images (tokens.reference_images), reconstructed as the evaluator does (evaluator.reconstruct_batch:
the same uint8 boundary), through the prior's Inception features, originals against reconstructions;
the originals' features are cached like every FID reference (the same for every tokenizer).
Both feature sets are kept in the prior folder (folder.TOKENIZER_RFID), so the tables give this rFID
the same paired image bootstrap as a tokenizer's own.

It is a small-sample number (a dagger in the tables) and it is not in the reconstruction table,
whose rFID comes only from tokenizer records.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.core.atomic import atomic_path
from bench.evaluation.evaluator import reconstruct_batch
from bench.evaluation.metrics import fid
from bench.generation import folder
from bench.generation import metrics as gm
from bench.generation.tokens import Tokenizer, reference_images, view_dataset

IMAGE_SEED = 0  # which held-out images are measured (a seeded subset, as the generation reference)


def needed(tok_record: dict[str, Any], n_images: int) -> bool:
    """Whether the prior should measure the tokenizer's rFID: asked for, and the record has none."""
    return n_images > 0 and (tok_record.get("metrics") or {}).get("fid") is None


def measure(tok: Tokenizer, extractor: Any, n_images: int, pdir: Path,
            batch_size: int = 64) -> tuple[float, dict[str, Any]]:
    """(rFID, its protocol) of the tokenizer on `n_images` held-out images; writes their features."""
    val = view_dataset(tok, "val")
    originals, chosen = reference_images(val, n_images, IMAGE_SEED)
    recons = torch.cat([reconstruct_batch(tok.model, originals[i : i + batch_size], tok.device)[0]
                        for i in range(0, len(originals), batch_size)])
    # The originals' features through the FID reference cache (as the evaluator's): the same for every
    # tokenizer of the dataset, so only the reconstructions go through Inception after the first prior.
    protocol = dict(getattr(val, "protocol", {}) or {})
    key = {"dataset": protocol.get("dataset", tok.run.dataset),
           "split": "val" if len(chosen) == len(val) else f"val-seed{IMAGE_SEED}-subset",
           "resolution": protocol.get("resolution", tok.run.model.resolution)}
    ref = gm.reference_statistics(originals, key, tok.device, extractor.fid_extractor)
    f_orig = np.asarray(ref.features, np.float32)
    f_recon = np.asarray(extractor(recons)[0], np.float32)
    with atomic_path(pdir / folder.TOKENIZER_RFID, suffix=".npz") as tmp:
        np.savez(tmp, originals=f_orig, reconstructions=f_recon, indices=np.asarray(chosen, np.int64))
    value = fid.frechet_distance(*fid.statistics(f_orig), *fid.statistics(f_recon))
    why = ((tok.record.get("protocol") or {}).get("fid") or {})
    return value, {
        "n_images": len(chosen), "of": len(val), "split": "val", "subset_seed": IMAGE_SEED if len(chosen) < len(val)
        else None, "file": folder.TOKENIZER_RFID,
        "why": "the tokenizer's record has no rFID" + (f" ({why['skipped']})" if isinstance(why, dict)
                                                        and why.get("skipped") else ""),
        "reconstruction": "bench.evaluation.evaluator.reconstruct_batch (clamp, uint8 once), eval mode",
        "features": "the prior's Inception-v3 pool3 features, originals vs reconstructions of the same images",
        "originals_cached": ref.cached, "originals_file": ref.path.name if ref.path else None,
        "rank_deficient": len(chosen) < fid.MIN_FULL_RANK,
    }
