"""`resume`: a short vqgan run end to end through bench.runs.runner.run_one (data loader, training with
its checkpoints, evaluation, record) three times, each in its own results folder: (a) uninterrupted;
(b) in a subprocess killed with SIGKILL as soon as its first checkpoint is on disk (as
tests/bench/training/test_resume_after_kill.py does), then resumed here; (c) as (a) again. After one
row per run, a vs b and a vs c: the largest absolute difference of the records' metrics and of the final
weights (model and discriminator, from each run's final checkpoint), and whether each is equal.

The run is the `gpu` preset (`smoke` in quick mode) shortened to a few hundred steps with four
checkpoints, the GAN on from half-way to the first, under a preset of its own name
(`<base>-resume-check`) that exists only inside this section.
"""
from __future__ import annotations

import contextlib
import json
import math
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench.core import run_folder
from bench.core.paths import REPO_ROOT
from bench.core.processes import EndedFirst, kill_once_file_exists
from bench.runs.presets import PRESETS, Preset
from bench.speed.gpu.section import NOTE, Context, Section, one_line
from bench.speed.training import CODEBOOK_SIZE

METHOD = "vqgan"
FULL_BASE, QUICK_BASE = "gpu", "smoke"
FULL_STEPS, QUICK_STEPS = 300, 8
QUICK_BATCH, QUICK_K = 2, 64
CHECKPOINTS = 4  # per run; the kill comes right after the first
FIRST_CHECKPOINT_WAIT_S = 300  # the killed run's start (imports, data, CUDA) and its first quarter
WEIGHT_PREFIXES = ("model.", "disc.")  # the checkpoint's module tensors (not optimizer, not RNG state)
COLUMNS = ["run", "status", "steps", "resumed from", "train s", "wall s", "psnr", "metrics max abs diff",
           "metrics equal", "weights max abs diff", "weights equal", NOTE]
RUNS = {"a": "a: uninterrupted", "b": "b: killed after its first checkpoint, resumed", "c": "c: uninterrupted again"}


@dataclass(frozen=True)
class Spec:
    """The run, the same in this process and in the killed subprocess (which gets it as JSON)."""

    base: str
    steps: int
    batch: int | None  # None: the base preset's
    codebook_size: int
    perceptual_metrics: bool
    device: str

    def preset(self) -> Preset:
        p = PRESETS[self.base]
        every = max(1, self.steps // CHECKPOINTS)
        train = replace(p.train, steps=self.steps, ckpt_every=every, log_every=max(1, every // 4),
                        disc_start=max(1, every // 2), perceptual_metrics=self.perceptual_metrics)
        if self.batch:
            train = replace(train, batch_size=self.batch, micro_batch=None)
        return replace(p, name=f"{self.base}-resume-check", train=train,
                       description=f"{self.base} shortened for the GPU check's resume section")

    def config(self):  # -> bench.runs.config.RunConfig
        from bench.runs.config import RunConfig

        return RunConfig(method=METHOD, codebook_size=self.codebook_size, preset=self.preset().name,
                         device=self.device)


@contextlib.contextmanager
def registered(spec: Spec) -> Iterator[Preset]:
    """The run's preset in PRESETS while the run resolves and runs (this process only)."""
    preset = spec.preset()
    PRESETS[preset.name] = preset
    try:
        yield preset
    finally:
        PRESETS.pop(preset.name, None)


def run_dir(spec: Spec, out: Path) -> Path:
    from bench.runs.config import resolve

    with registered(spec):
        return run_folder.run_dir(out, resolve(spec.config()).run_id)


def run_in(spec: Spec, out: Path) -> dict[str, Any]:
    """run_one: a fresh run, or the resumption of the one whose checkpoint is in `out`."""
    from bench.runs.runner import run_one

    with registered(spec):
        return run_one(spec.config(), out, progress=False)


def killed_then_resumed(spec: Spec, out: Path) -> tuple[dict[str, Any], str]:
    """(b): the run in a subprocess, SIGKILLed as soon as its first checkpoint exists, then resumed here.
    (record, note on the kill)."""
    folder = run_dir(spec, out)
    checkpoint = folder / run_folder.CHECKPOINT
    out.mkdir(parents=True, exist_ok=True)
    log = out / "killed_run.log"
    with open(log, "w") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "bench.speed.gpu.resume", "--child", str(out),
                                 json.dumps(asdict(spec))], cwd=REPO_ROOT, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        kill_once_file_exists(proc, checkpoint, FIRST_CHECKPOINT_WAIT_S)
    except EndedFirst as ended:
        raise RuntimeError(f"the run to kill ended before its first checkpoint ({ended}): {_last_line(log)}") from None
    except TimeoutError:
        raise RuntimeError(f"the run to kill wrote no checkpoint within {FIRST_CHECKPOINT_WAIT_S} s") from None
    from bench.runs import records

    note = ("killed by SIGKILL after its first checkpoint" if records.read_record(folder) is None
            else "NOT killed mid-run: it had finished before the kill")
    return run_in(spec, out), note


def _last_line(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no output"


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def metrics_difference(a: dict[str, Any], b: dict[str, Any]) -> tuple[float, bool, str]:
    """(largest |a - b| over the metrics either record has, whether every metric is equal, the metric
    with the largest difference). A metric in one record only, or NaN in one only, is an infinite
    difference; NaN in both is equal."""
    worst, worst_key, equal = 0.0, "", True
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if _number(va) and _number(vb):
            both_nan = math.isnan(va) and math.isnan(vb)
            d = 0.0 if both_nan else abs(va - vb)
            d = math.inf if math.isnan(d) else d
            same = both_nan or va == vb
        else:
            same = va == vb
            d = 0.0 if same else math.inf
        equal &= same
        if d > worst or (not worst_key and not same):
            worst, worst_key = d, key
    return worst, equal, worst_key


def weights_difference(a: Path, b: Path) -> tuple[float, bool]:
    """(largest |a - b| over the model and discriminator tensors of two checkpoints, whether all equal)."""
    from safetensors.torch import load_file

    ta, tb = load_file(str(a)), load_file(str(b))
    names = sorted(k for k in ta if k.startswith(WEIGHT_PREFIXES))
    if names != sorted(k for k in tb if k.startswith(WEIGHT_PREFIXES)):
        raise ValueError(f"the checkpoints {a} and {b} hold different tensors")
    worst, equal = 0.0, True
    for name in names:
        x, y = ta[name], tb[name]
        equal &= bool(x.shape == y.shape and x.dtype == y.dtype and bool((x == y).all()))
        if x.is_floating_point():
            worst = max(worst, float((x.double() - y.double()).abs().max()) if x.numel() else 0.0)
    return worst, equal


def perceptual_metrics_here(base: str) -> tuple[bool, str]:
    """Whether the base preset's rFID/KID/LPIPS can run here (their weights are on this machine); if not,
    the run leaves them off rather than fail its evaluation."""
    if not PRESETS[base].train.perceptual_metrics:
        return False, ""
    try:
        from bench.evaluation.metrics import fid_weights, lpips

        fid_weights.resolve_weights()
        lpips.get_network("alex", "cpu")
    except Exception as exc:  # noqa: BLE001 - any reason they cannot load: say which
        return False, f"rFID/KID/LPIPS off (their weights are not here: {one_line(exc)})"
    return True, ""


def run_row(label: str, record: dict[str, Any], note: str = "") -> dict[str, Any]:
    error = record.get("error") or ""
    return {"run": label, "status": record.get("status"), "steps": record.get("steps_done"),
            "resumed from": record.get("resumed_from"), "train s": record.get("train_s"),
            "wall s": record.get("wall_s"), "psnr": (record.get("metrics") or {}).get("psnr"),
            NOTE: "; ".join(t for t in (note, str(error).splitlines()[0][:200] if error else "") if t)}


def compare(section: Section, spec: Spec, outs: dict[str, Path], recs: dict[str, dict[str, Any]], x: str,
            y: str) -> None:
    def measure() -> dict[str, Any]:
        missing = [r for r in (x, y) if recs.get(r, {}).get("status") != "finished"]
        if missing:
            raise RuntimeError(f"run {' and '.join(missing)} did not finish")
        diff, equal, worst = metrics_difference(recs[x]["metrics"], recs[y]["metrics"])
        wdiff, wequal = weights_difference(*(run_dir(spec, outs[r]) / run_folder.CHECKPOINT for r in (x, y)))
        return {"metrics max abs diff": diff, "metrics equal": equal, "weights max abs diff": wdiff,
                "weights equal": wequal, NOTE: f"largest in {worst}" if worst else ""}

    section.attempt({"run": f"{x} vs {y}"}, measure)


def run(ctx: Context) -> None:
    base = QUICK_BASE if ctx.quick else FULL_BASE
    perceptual, why = perceptual_metrics_here(base)
    spec = Spec(base, QUICK_STEPS if ctx.quick else FULL_STEPS, QUICK_BATCH if ctx.quick else None,
                QUICK_K if ctx.quick else CODEBOOK_SIZE, perceptual, str(ctx.device))
    p = spec.preset()
    section = ctx.section(
        "resume: killed and resumed, and repeated",
        f"{METHOD} K={spec.codebook_size} on photos, preset {p.name} ({base} with {p.train.steps} steps, batch "
        f"{p.train.batch_size}, a checkpoint every {p.train.ckpt_every}, the GAN from step {p.train.disc_start}) "
        f"through run_one, three times: a; b killed with SIGKILL in a subprocess once its first checkpoint "
        f"exists, then resumed; c as a. Then the largest absolute difference of the records' metrics and of "
        f"the final model and discriminator weights.{' ' + why + '.' if why else ''}", COLUMNS)
    recs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="vqbench-resume-") as tmp:
        outs = {r: Path(tmp) / r for r in RUNS}
        for r, label in RUNS.items():
            try:
                record, note = killed_then_resumed(spec, outs[r]) if r == "b" else (run_in(spec, outs[r]), "")
            except Exception as exc:  # noqa: BLE001 - this run's row carries it; the comparisons say why they fail
                section.row({"run": label, NOTE: f"error: {one_line(exc)}"})
                continue
            recs[r] = record
            section.row(run_row(label, record, note))
        compare(section, spec, outs, recs, "a", "b")
        compare(section, spec, outs, recs, "a", "c")


def _child(argv: list[str]) -> int:
    """The run (b) that gets killed: `python -m bench.speed.gpu.resume --child OUT SPEC_JSON`."""
    if len(argv) != 3 or argv[0] != "--child":
        print("usage: python -m bench.speed.gpu.resume --child OUT SPEC_JSON (the resume section starts it)",
              file=sys.stderr)
        return 2
    run_in(Spec(**json.loads(argv[2])), Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
