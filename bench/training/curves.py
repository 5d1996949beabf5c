"""Live training curves as TensorBoard events in the run folder (`OUT/runs/<id>/tensorboard/`):
`tensorboard --logdir OUT/runs` shows every run of a grid side by side, as taming's and LlamaGen's
users watch theirs.

What is written: at each log interval the train log's scalars (loss terms, learning rate, code
usage and perplexity), the step time and the generator's gradient norm; every `IMAGE_EVERY` log
intervals a grid of fixed training images above their reconstructions; when the run has been
evaluated, its resolved config and final metrics as hparams. Only rank 0 of a data-parallel group
writes. A resumed run opens its writer with `purge_step` just past the checkpoint's step, TensorBoard's
own mechanism for a restart: events of later steps, written before the restart and redone now, are
dropped when the folder is read, so no step appears twice.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.core import run_folder
from bench.core.images import to_float, to_uint8

IMAGE_EVERY = 5  # log intervals between two reconstruction grids
GRID_IMAGES = 8
# The train log's keys that are not curves (the step is the x axis).
NOT_SCALARS = {"step"}


class Curves:
    """One run's event writer; a no-op object where curves are off or not this rank's to write."""

    def __init__(self, run_dir: Path, start_step: int, enabled: bool = True) -> None:
        self.writer = None
        self._last: tuple[int, float] | None = None  # (step, elapsed_s) of the previous log line
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:  # the tensorboard package is in requirements/base.txt
            print(f"warning: no training curves ({exc}); install tensorboard or pass --no-tensorboard",
                  file=sys.stderr)
            return
        # Steps after the checkpoint's are redone, so TensorBoard drops the earlier events from step + 1 on.
        self.writer = SummaryWriter(log_dir=str(run_dir / run_folder.TENSORBOARD),
                                    purge_step=start_step + 1 if start_step else None)

    @property
    def active(self) -> bool:
        return self.writer is not None

    def scalars(self, logs: dict[str, float]) -> None:
        """The train log line of one logged step, plus the step time since the previous line."""
        if self.writer is None:
            return
        step = int(logs["step"])
        for key, value in logs.items():
            if key not in NOT_SCALARS and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(f"train/{key}", value, step)
        elapsed = logs.get("elapsed_s")
        if self._last is not None and elapsed is not None and step > self._last[0]:
            self.writer.add_scalar("train/step_time_s", (elapsed - self._last[1]) / (step - self._last[0]), step)
        if elapsed is not None:
            self._last = (step, float(elapsed))
        self.writer.flush()

    def wants_images(self, step: int, log_every: int, last_step: int) -> bool:
        """Every IMAGE_EVERY log intervals, and at the last step (so every run has at least one)."""
        return self.writer is not None and (step % (log_every * IMAGE_EVERY) == 0 or step == last_step)

    @torch.no_grad()
    def reconstructions(self, model: nn.Module, images: torch.Tensor, step: int) -> None:
        """Originals (uint8, first row) above their reconstructions. The forward runs in eval mode
        under a forked RNG, so training draws exactly the random numbers it would without it."""
        if self.writer is None:
            return
        with torch.random.fork_rng(devices=[images.device] if images.device.type == "cuda" else []):
            was_training = model.training
            model.eval()
            try:
                xrec, _ = model(to_float(images))
            finally:
                model.train(was_training)
        recon = to_uint8(xrec.float()).cpu()
        grid = torch.cat([images.cpu(), recon])  # (2N, 3, H, W)
        n, (c, h, w) = images.shape[0], grid.shape[1:]
        tiled = grid.view(2, n, c, h, w).permute(2, 0, 3, 1, 4).reshape(c, 2 * h, n * w)
        self.writer.add_image("train/reconstructions", tiled, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def write_hparams(run_dir: Path, config: dict[str, Any], metrics: dict[str, Any]) -> None:
    """The resolved config (flattened, scalars only) and the final metrics, as TensorBoard hparams."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return
    hparams = {k: v for k, v in _flatten(config).items() if isinstance(v, (bool, int, float, str))}
    values = {f"final/{k}": float(v) for k, v in metrics.items()
              if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    with SummaryWriter(log_dir=str(run_dir / run_folder.TENSORBOARD)) as writer:
        writer.add_hparams(hparams, values, run_name=".")


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            out[name] = ",".join(map(str, value))
        else:
            out[name] = value
    return out
