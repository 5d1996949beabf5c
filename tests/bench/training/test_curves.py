"""Every run writes TensorBoard events that TensorBoard's own reader gets back: the train log's
scalars, the step time and gradient norm, a reconstruction grid and the final hparams; a resumed run
shows no step twice; --no-tensorboard writes none."""
from __future__ import annotations

import dataclasses

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bench.core import run_folder
from bench.runs import presets
from bench.runs.config import RunConfig
from bench.runs.runner import run_one
from bench.training import curves


def _events(run_dir) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir / run_folder.TENSORBOARD), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


@pytest.fixture
def log_every_step(monkeypatch):
    """The smoke preset logging every step (checkpoints stay every 5), so a kill between two
    checkpoints leaves logged steps that the resumed run redoes."""
    smoke = presets.PRESETS["smoke"]
    monkeypatch.setitem(presets.PRESETS, "smoke", dataclasses.replace(smoke, train=dataclasses.replace(
        smoke.train, log_every=1, steps=12)))


def test_a_run_writes_scalars_an_image_and_hparams(tmp_path):
    rec = run_one(RunConfig(method="vqgan", preset="smoke", codebook_size=16, steps=10), tmp_path, progress=False)
    acc = _events(run_folder.run_dir(tmp_path, rec["run_id"]))
    tags = acc.Tags()
    for tag in ("train/loss", "train/rec", "train/lr", "train/utilization", "train/perplexity", "train/grad_norm",
                "train/step_time_s"):
        assert tag in tags["scalars"], tag
    assert [e.step for e in acc.Scalars("train/loss")] == [5, 10]  # the smoke preset logs every 5 steps
    assert all(e.value > 0 for e in acc.Scalars("train/grad_norm"))
    [image] = acc.Images("train/reconstructions")  # at the last step
    assert image.step == 10 and image.width == 8 * 16 and image.height == 2 * 16  # originals over reconstructions
    assert "_hparams_/session_start_info" in acc.PluginTagToContent("hparams")
    # the final metrics beside the hparams: scalars that TensorBoard's HPARAMS tab reads
    [psnr] = acc.Scalars("final/psnr")
    assert psnr.value == pytest.approx(rec["metrics"]["psnr"])


def test_a_resumed_run_shows_no_step_twice(tmp_path, monkeypatch, log_every_step):
    original = curves.Curves.scalars

    def stop_after_step_8(self, logs):
        original(self, logs)
        if logs["step"] == 8:  # past the checkpoint of step 5: steps 6-8 are logged, then redone
            raise KeyboardInterrupt

    config = RunConfig(method="vqgan", preset="smoke", codebook_size=16)
    monkeypatch.setattr(curves.Curves, "scalars", stop_after_step_8)
    with pytest.raises(KeyboardInterrupt):
        run_one(config, tmp_path, progress=False)
    monkeypatch.setattr(curves.Curves, "scalars", original)
    rec = run_one(config, tmp_path, progress=False)
    assert rec["status"] == "finished" and rec["resumed_from"] == 5
    steps = [e.step for e in _events(run_folder.run_dir(tmp_path, rec["run_id"])).Scalars("train/loss")]
    assert steps == list(range(1, 13))


def test_no_tensorboard_writes_no_events(tmp_path):
    rec = run_one(RunConfig(method="vqgan", preset="smoke", codebook_size=16, steps=5, tensorboard=False), tmp_path,
                  progress=False)
    assert rec["status"] == "finished"
    assert not (run_folder.run_dir(tmp_path, rec["run_id"]) / run_folder.TENSORBOARD).exists()
