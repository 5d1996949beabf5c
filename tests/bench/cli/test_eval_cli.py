"""`run_bench.py eval`: a synthetic checkpoint of every kind is evaluated on `photos` into a record
marked released with the file's SHA-256, a rerun skips it, a grid of checkpoints goes through the
scheduler, and bad checkpoints (a missing or misshapen key, a hostile pickle) exit 2 with one line
before any run folder exists.

The checkpoints are built as tests/bench/released builds them (tiny configs, random weights, the
real key layouts); each evaluation reads 3 validation tiles at 16 px without Inception or LPIPS, so
it takes seconds."""
from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest
import taming.modules.diffusionmodules.model  # noqa: F401 - a test requirement (requirements/test.txt): fail, never skip, when absent
import torch

from bench.cli import main as cli
from bench.core import run_folder
from bench.released.vqct_prior import PRIOR_FILE
from bench.runs import records
from tests.bench.released import oracles
from tests.bench.released.test_safe_load import Hostile
from tests.bench.released.test_vqbench import run_folder_of

FAST = ["--datasets", "photos", "--limit-val", "3", "--no-perceptual-metrics", "--no-ray", "--no-progress"]


def taming_checkpoint(root, gumbel=False, state_dict=None):
    config = oracles.taming_config(oracles.ddconfig(attn=(), z=16 if gumbel else 32), 16, 16 if gumbel else 8,
                                   gumbel=gumbel)
    sd = oracles.build_taming(config).state_dict() if state_dict is None else state_dict
    oracles.write_yaml(root / "configs" / "model.yaml", config)
    return oracles.save_lightning(root / "ckpts" / "last.ckpt", sd)


def vqct_checkpoint(root):
    import torch_geometric.nn  # noqa: F401 - a test requirement (the official quantizer's GCNConv)

    prior = oracles.vqct_prior()
    root.mkdir(parents=True)
    with (root / PRIOR_FILE).open("wb") as f:
        pickle.dump(prior, f)
    vectors, edges, n_adj = oracles.official_vqct_inputs(prior)
    dd = oracles.ddconfig(attn=())
    model = oracles.OfficialVQCT(dd, 8, oracles.OfficialVQCTQuantizer(vectors, edges, n_adj, 8, 2))
    oracles.write_yaml(root / "model.yaml", {"model": {"params": {"embed_dim": 8, "topk": 2, "ddconfig": dd}}})
    return oracles.save_lightning(root / "last.ckpt", model.state_dict())


def llamagen_checkpoint(root):
    torch.manual_seed(0)
    return oracles.save_llamagen(root / "vq_ds16_c2i.pt", oracles.LlamaGenVQ(ch=32, ch_mult=(1, 2)).state_dict())


def vqbench_checkpoint(root):
    folder, _, _ = run_folder_of(root, "vqgan")
    return folder


# kind -> (builder, the file whose SHA-256 the record names, extra flags, method)
KINDS = {
    "taming": (taming_checkpoint, lambda p: p, [], "vqgan"),
    "taming-gumbel": (lambda r: taming_checkpoint(r, gumbel=True), lambda p: p, [], "gumbel"),
    "vqct": (vqct_checkpoint, lambda p: p, [], "vqct"),
    "llamagen": (llamagen_checkpoint, lambda p: p, ["--resolution", "16"], "vqgan"),  # its args say 256 px
    "vqbench": (vqbench_checkpoint, lambda p: p / run_folder.CHECKPOINT, [], "vqgan"),
}


def released_records(out):
    return list(records.iter_records(out))


@pytest.mark.parametrize("case", list(KINDS))
def test_eval_writes_a_released_record_and_skips_it_on_rerun(tmp_path, capsys, case):
    build, hashed, flags, method = KINDS[case]
    kind = case.split("-")[0]
    path = build(tmp_path / "ckpt")
    out = tmp_path / "out"
    argv = ["eval", "--checkpoint", f"{kind}:{path}", *FAST, *flags, "--out", str(out)]
    assert cli.main(argv) == 0
    [record] = released_records(out)
    assert record["status"] == "finished", record.get("error")
    assert record["source"] == "released" and record["checkpoint"]["kind"] == kind
    assert record["checkpoint"]["sha256"] == hashlib.sha256(hashed(path).read_bytes()).hexdigest()
    assert record["config"]["method"] == method and record["config"]["dataset"] == "photos"
    assert record["run_id"].startswith(f"released-{kind}-{method}-photos-")
    assert 0 < record["metrics"]["psnr"] < 100 and 0 < record["metrics"]["utilization"] <= 1
    assert record["metrics"]["fid"] is None  # --no-perceptual-metrics
    assert record["protocol"]["n_images"] == 3 and record["protocol"]["released"]["evaluated_resolution"] == 16
    run_dir = run_folder.run_dir(out, record["run_id"])
    assert len(np.load(run_dir / run_folder.PER_IMAGE)["names"]) == 3
    assert (run_dir / run_folder.GRID).is_file() and (run_dir / run_folder.CODE_COUNTS).is_file()
    if kind == "vqct":
        assert record["metrics"]["utilization_adj"] is not None and (run_dir / run_folder.CODE_WORDS).is_file()
    assert "Reconstruction on photos" in capsys.readouterr().out  # the tables, as `run` prints them

    before = (run_dir / run_folder.RECORD).read_bytes()
    assert cli.main(argv) == 0
    assert "skipped released" in capsys.readouterr().out
    assert (run_dir / run_folder.RECORD).read_bytes() == before and len(released_records(out)) == 1


def test_grid_of_checkpoints_and_a_changed_file_is_a_new_run(tmp_path):
    first = taming_checkpoint(tmp_path / "a")
    second = llamagen_checkpoint(tmp_path / "b")
    out = tmp_path / "out"
    argv = ["eval", "--checkpoint", f"taming:{first}", "--checkpoint", f"llamagen:{second}", *FAST,
            "--resolution", "16", "--out", str(out)]
    assert cli.main(argv) == 0
    assert sorted(r["checkpoint"]["kind"] for r in released_records(out)) == ["llamagen", "taming"]
    torch.manual_seed(9)  # other weights in the same place: other bytes, so not the finished run
    taming_checkpoint(tmp_path / "a", state_dict=oracles.build_taming(oracles.taming_config(
        oracles.ddconfig(attn=()), 16, 8), seed=9).state_dict())
    assert cli.main(["eval", "--checkpoint", f"taming:{first}", *FAST, "--resolution", "16", "--out", str(out)]) == 0
    assert len([r for r in released_records(out) if r["checkpoint"]["kind"] == "taming"]) == 2


@pytest.mark.slow
def test_grid_through_the_ray_backend(tmp_path):
    paths = [taming_checkpoint(tmp_path / "a"), taming_checkpoint(tmp_path / "b", gumbel=True)]
    out = tmp_path / "out"
    argv = ["eval", *[a for p in paths for a in ("--checkpoint", f"taming:{p}")], *FAST[:-2], "--no-progress",
            "--num-cpus", "2", "--out", str(out)]
    assert cli.main(argv) == 0
    recs = released_records(out)
    assert sorted(r["config"]["method"] for r in recs) == ["gumbel", "vqgan"]
    assert all(r["status"] == "finished" and r["source"] == "released" for r in recs)


def _exits_2_before_any_run_folder(argv, out, capsys, *expected):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for text in expected:
        assert text in err, err
    assert not (out / run_folder.RUNS).exists()
    return err


@pytest.mark.parametrize("damage,expected", [
    ("missing", "missing key 'encoder.conv_in.weight'"),
    ("misshapen", "key 'quantize.embedding.weight' has shape (16, 3)"),
])
def test_bad_checkpoint_exits_2_naming_the_key_before_any_run_folder(tmp_path, capsys, damage, expected):
    good = taming_checkpoint(tmp_path / "good")
    sd = oracles.build_taming(oracles.taming_config(oracles.ddconfig(attn=()), 16, 8)).state_dict()
    if damage == "missing":
        del sd["encoder.conv_in.weight"]
    else:
        sd["quantize.embedding.weight"] = torch.zeros(16, 3)
    bad = taming_checkpoint(tmp_path / "bad", state_dict=sd)
    out = tmp_path / "out"
    # the good checkpoint comes first: nothing of it runs either
    _exits_2_before_any_run_folder(["eval", "--checkpoint", f"taming:{good}", "--checkpoint", f"taming:{bad}",
                                    *FAST, "--out", str(out)], out, capsys, expected)


def test_hostile_pickle_exits_2_and_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "marker.txt"
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"encoder.conv_in.weight": torch.zeros(1)}, "hparams": Hostile(marker)}, ckpt)
    oracles.write_yaml(tmp_path / "model.yaml", oracles.taming_config(oracles.ddconfig(), 16, 8))
    out = tmp_path / "out"
    _exits_2_before_any_run_folder(["eval", "--checkpoint", f"taming:{ckpt}", "--config", str(tmp_path / "model.yaml"),
                                    *FAST, "--out", str(out)], out, capsys, "refused checkpoint", "arbitrary code")
    assert not marker.exists()


def test_bad_specs_and_flags_exit_2(tmp_path, capsys):
    out = tmp_path / "out"
    _exits_2_before_any_run_folder(["eval", "--checkpoint", "tamng:x.ckpt", *FAST, "--out", str(out)], out, capsys,
                                   "unknown released checkpoint kind 'tamng'", "taming")
    _exits_2_before_any_run_folder(["eval", "--checkpoint", f"taming:{tmp_path / 'absent.ckpt'}", *FAST, "--out",
                                    str(out)], out, capsys, "absent.ckpt does not exist")
    ckpt = taming_checkpoint(tmp_path / "c")
    _exits_2_before_any_run_folder(["eval", "--checkpoint", f"taming:{ckpt}", "--config", "a.yaml", "--config", "b.yaml",
                                    *FAST, "--out", str(out)], out, capsys, "--config was given 2 time(s) for 1")
    _exits_2_before_any_run_folder(["eval", "--checkpoint", f"taming:{ckpt}", *FAST, "--resolution", "17", "--out",
                                    str(out)], out, capsys, "not a multiple of the tokenizer's downsampling factor 2")
    _exits_2_before_any_run_folder(["eval", "--checkpoint", f"taming:{ckpt}", *FAST, "--datasets", "no-such-data",
                                    "--out", str(out)], out, capsys, "no-such-data")


def test_a_trained_run_evaluated_as_released_gives_the_trained_run_s_numbers(tmp_path):
    """The same evaluation as a trained run: its own checkpoint, evaluated by `eval`, reproduces the
    metrics, per-image values and code histogram its record and folder hold."""
    from bench.runs.config import RunConfig
    from bench.runs.runner import run_one

    trained = run_one(RunConfig(method="vqgan", dataset="photos", codebook_size=16, preset="smoke", steps=4,
                                dataset_options={"limit_val": 12}), tmp_path / "train", progress=False)
    assert trained["status"] == "finished", trained.get("error")
    folder = run_folder.run_dir(tmp_path / "train", trained["run_id"])
    out = tmp_path / "out"
    assert cli.main(["eval", "--checkpoint", f"vqbench:{folder}", "--limit-val", "12", "--no-perceptual-metrics",
                     "--no-ray", "--no-progress", "--out", str(out)]) == 0
    [record] = released_records(out)
    ours = run_folder.run_dir(out, record["run_id"])
    for key in ("psnr", "ssim", "utilization", "perplexity"):
        assert record["metrics"][key] == trained["metrics"][key], key
    assert np.array_equal(np.load(ours / run_folder.CODE_COUNTS), np.load(folder / run_folder.CODE_COUNTS))
    theirs, mine = np.load(folder / run_folder.PER_IMAGE), np.load(ours / run_folder.PER_IMAGE)
    assert list(mine["names"]) == list(theirs["names"]) and np.array_equal(mine["psnr"], theirs["psnr"])
    assert record["tokens"] == trained["tokens"] and record["protocol"]["n_images"] == 12
