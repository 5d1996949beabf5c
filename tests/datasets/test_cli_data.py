"""The command line on folder datasets, end to end: imagefolder runs with --limit-val, the cache and
--skip-bad-images and records what they did; an alias is recorded canonically; bad data input exits 2
with one line before any work starts."""
from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from bench.cli.main import main
from bench.evaluation import evaluator
from bench.runs import config, runner

from .fake_trees import BUILDERS, write_image

FAST = ["--methods", "vqgan", "--preset", "smoke", "--steps", "3", "--codebook-sizes", "16", "--no-progress", "--no-ray"]


def _records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*/record.json"))]


@pytest.fixture(autouse=True)
def _fast(tmp_path, monkeypatch):
    """Own cache folder; no LPIPS/rFID (a minute of Inception on 2 CPU cores; tested in tests/bench)."""
    monkeypatch.setenv("VQBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(runner, "evaluate", functools.partial(evaluator.evaluate, perceptual=False))


def _main(args: list[str]) -> int:
    try:
        return main(args)
    except SystemExit as exc:  # argparse's own errors
        return int(exc.code)


def test_imagefolder_end_to_end(tmp_path, capsys):
    folder = tmp_path / "pics"
    train = [write_image(folder / "train" / f"sub{k % 2}" / f"t{k}.jpg") for k in range(8)]
    [write_image(folder / "val" / f"v{k}.png") for k in range(4)]
    bad = train[0]
    bad.write_bytes(bad.read_bytes()[:100])
    out = tmp_path / "results"
    args = [*FAST, "--datasets", f"imagefolder:{folder}", "--limit-val", "2", "--out", str(out)]
    assert main(args) == 1  # the truncated file fails the run, which is recorded
    (rec,) = _records(out)
    assert rec["status"] == "failed" and str(bad) in rec["error"] and "--skip-bad-images" in rec["error"]
    assert str(bad) in capsys.readouterr().err
    assert main([*args, "--skip-bad-images", "--dataset-cache"]) == 0
    (rec,) = _records(out)  # same run id: where and how the data is read is not part of it
    assert rec["status"] == "finished" and rec["config"]["dataset"] == f"imagefolder:{folder}"
    assert rec["config"]["dataset_options"] == {"limit_val": 2}
    p = rec["protocol"]
    assert p["limit_val"] == 2 and p["n_images"] == 2 and p["split_size"] == 4 and p["preprocessing"]["crop"].startswith("center")
    assert "decoded_cache" in p
    assert rec["data"]["train"]["bad_images_skipped"] == 1 and rec["data"]["train"]["skip_bad_images"] is True
    assert rec["data"]["train"]["bad_image_examples"] == ["sub0/t0.jpg"]
    assert rec["data"]["val"]["images_read"] == 2 and rec["data"]["val"]["upscaled_images"] == 0
    assert "/" not in rec["run_id"] and rec["run_id"].startswith("vqgan-imagefolder_test_imagefolder_end_to_end0_pics-K16-s0-")


def test_alias_resolves_to_one_run_id(tmp_path):
    folder, _ = BUILDERS["ade20k-challenge"][1](tmp_path)
    same = [config.RunConfig(method="vqgan", dataset=d, dataset_paths={p: str(folder)})
            for d in ("adeg20k", "ade20k") for p in ("adeg20k", "ade20k")]
    resolved = [config.resolve(c) for c in same]
    assert {r.dataset for r in resolved} == {"ade20k"} and len({r.run_id for r in resolved}) == 1
    assert resolved[0].run_id.startswith("vqgan-ade20k-K")
    other = config.RunConfig(method="vqgan", dataset="ade20k", dataset_paths={"ade20k": str(folder)},
                             dataset_cache=True, skip_bad_images=True, data_root="/elsewhere")
    assert config.resolve(other).run_id == resolved[0].run_id  # how data is read: not in the id
    limited = config.RunConfig(method="vqgan", dataset="ade20k", dataset_paths={"ade20k": str(folder)},
                               dataset_options={"limit_val": 1})
    assert config.resolve(limited).run_id != resolved[0].run_id  # which images: in the id


@pytest.mark.slow
def test_alias_and_dataset_path_recorded_canonically(tmp_path):
    folder, _ = BUILDERS["ade20k-challenge"][1](tmp_path)
    out = tmp_path / "results"
    assert main([*FAST, "--datasets", "adeg20k", "--dataset-path", f"adeg20k={folder}",
                 "--dataset-option", "train_crop=center", "--out", str(out)]) == 0
    (rec,) = _records(out)
    assert rec["config"]["dataset"] == "ade20k" and rec["protocol"]["dataset"] == "ade20k"
    assert rec["config"]["dataset_options"] == {"train_crop": "center"}
    assert rec["data"]["val"]["images_read"] == 2


@pytest.mark.parametrize("extra, message", [
    (["--datasets", "ffhq", "--data-root", "{tmp}"], "dataset 'ffhq': tried {tmp}/ffhq (no such folder)"),
    (["--datasets", "imagefolder:{tmp}/none"], "dataset 'imagefolder:{tmp}/none': tried {tmp}/none (no such folder)"),
    (["--datasets", "cub200", "--dataset-path", "cub200={tmp}"], "expected CUB_200_2011/{{images.txt"),
    (["--datasets", "adeg20k", "--dataset-path", "adeg20k={tmp}/x"], "dataset 'ade20k': tried {tmp}/x (no such folder)"),
    (["--dataset-path", "fhq={tmp}"], "unknown dataset 'fhq' (did you mean 'ffhq'?)"),
    (["--dataset-path", "ffhq"], "expected NAME=PATH"),
    (["--limit-val", "0"], "must be a positive integer"),
    (["--dataset-option", "crop=center"], "dataset 'photos' has no option 'crop'"),
    (["--datasets", "imagefolder"], "use imagefolder:PATH"),
])
def test_bad_data_input_exits_2_with_one_line(extra, message, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    message = message.format(tmp=tmp_path)
    code = _main([*FAST, *extra, "--out", str(tmp_path / "results")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "results" / "runs").exists()
