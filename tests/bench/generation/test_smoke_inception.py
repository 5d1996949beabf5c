"""The `smoke` prior scores Inception features on capped counts, so `--generate --preset smoke` shows
generation FID beside reconstruction FID: gFID with its bootstrap interval over the samples, and,
because a smoke tokenizer's record has no rFID, an rFID the prior measures itself on a few held-out
images. A stand-in feature extractor (mean colours) keeps this seconds long; the real Inception
path is the same code with other weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bench.evaluation.evaluator import reconstruct_batch
from bench.evaluation.metrics import fid, fid_weights
from bench.generation import folder, run_prior
from bench.generation import metrics as gm
from bench.generation.config import prior_preset
from bench.generation.tokens import load_tokenizer, view_dataset
from bench.reporting import generation_table
from bench.runs.config import RunConfig
from bench.runs.runner import run_one

from .toy import write_toy


class _MeanColour(nn.Module):
    def forward(self, x):
        f = x.float().mean(dim=(2, 3))
        return (torch.cat([f, f.pow(2) / 255, x.float().std(dim=(2, 3))], 1),)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    base = tmp_path_factory.mktemp("smoke_inception")
    root = write_toy(base / "toy")
    cfg = RunConfig(method="vqgan", dataset=f"imagefolder:{root}", codebook_size=16, preset="smoke", steps=20,
                    dataset_options={"hflip": False})
    rec = run_one(cfg, base / "out", progress=False)
    assert rec["status"] == "finished" and rec["metrics"]["fid"] is None  # the smoke tokenizer has no rFID
    return base / "out", base / "out" / "runs" / rec["run_id"]


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    monkeypatch.setenv("VQBENCH_CACHE", str(tmp_path / "cache"))  # its own reference entries
    ext = fid.Extractor(_MeanColour(), fid_weights.InceptionWeights(tmp_path / "none.pth", "stand-in", {}),
                        torch.device("cpu"))
    monkeypatch.setattr(gm, "generation_extractor",
                        lambda device="cpu": gm.GenerationExtractor(ext, None, "the stand-in has no logits"))
    return ext


def test_smoke_prior_gives_gfid_with_interval_and_an_rfid_beside_it(tokenizer, stand_in):
    out, tok_dir = tokenizer
    cfg = prior_preset("smoke").override({"train.steps": 10})
    rec = run_prior(tok_dir, cfg, out, progress=False)
    assert rec["status"] == "finished", rec.get("traceback")
    m, proto = rec["metrics"], rec["protocol"]
    assert proto["fid"]["generated"] == 16 and proto["fid"]["reference"]["n_images"] == 32
    assert m["gfid_lo"] < m["gfid"] < m["gfid_hi"] and m["gkid_lo"] < m["gkid"] < m["gkid_hi"]
    assert proto["interval"]["resamples"] == 200 and proto["interval"]["n_samples"] == 16
    pdir = folder.prior_dir(out, rec["prior_id"])
    assert (pdir / folder.BOOTSTRAP).is_file() and (pdir / folder.TOKENIZER_RFID).is_file()
    # the rFID the prior measured: the toy's 8 held-out images (fewer than the 16 asked) against their
    # reconstructions, as the evaluator reconstructs them
    assert proto["tokenizer_rfid"]["n_images"] == 8 and proto["tokenizer_rfid"]["of"] == 8
    assert proto["tokenizer_rfid"]["originals_cached"] is False  # computed now, kept for the next tokenizer
    assert "__val__" in proto["tokenizer_rfid"]["originals_file"]  # all 8: the whole split's entry
    tok = load_tokenizer(tok_dir, torch.device("cpu"))
    originals = torch.stack(list(view_dataset(tok, "val")))
    recons = reconstruct_batch(tok.model, originals, torch.device("cpu"))[0]
    f_o, f_r = (fid.inception_features(x, extractor=stand_in).astype(np.float32) for x in (originals, recons))
    assert m["tokenizer_rfid"] == pytest.approx(fid.frechet_distance(*fid.statistics(f_o), *fid.statistics(f_r)),
                                                rel=1e-9)
    # the table: rFID (n=8) with its image bootstrap, gFID (n=16) with its sample bootstrap, both daggered
    rows = generation_table.read(out)
    frame = generation_table.generation_frame(rows).iloc[0]
    assert frame["rfid"] == pytest.approx(m["tokenizer_rfid"]) and frame["rfid_lo"] <= frame["rfid"] <= frame["rfid_hi"]
    assert frame["Interval"] == "images / samples, 1 seed"
    text = generation_table.render(rows, "md")
    row = next(line for line in text.splitlines() if line.startswith("| vqgan"))
    assert "(n=8)†" in row and "(n=16)†" in row and "n/a" not in row.split("|")[5]
    assert "the prior stage measured it on n = 8 held-out images" in text
