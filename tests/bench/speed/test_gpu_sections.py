"""`python -m bench.speed.gpu SECTION`: every section's CPU quick mode appends a heading, its line and a
well-formed table; rows reach the disk as they are measured (a section killed after its first row keeps
it); a failing row carries its error and the section goes on; a crash exits 1 and says so; bad arguments
exit 2 with one line. The sizes are cut further here (one method, tiny shapes): the CPU is shared."""
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bench.evaluation import precision
from bench.speed.gpu import evaluation, peak, resume, search, steps
from bench.speed.gpu.__main__ import main
from bench.speed.gpu.section import NOTE, Context, Section
from bench.speed.shapes import Shape

REPO = Path(__file__).resolve().parents[3]
CPU = torch.device("cpu")


def table(text: str, title_start: str) -> list[dict[str, str]]:
    """The rows of the table under the heading that starts with `title_start`, checked well-formed."""
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(f"## {title_start}"))
    assert lines[at + 1] == "" and lines[at + 2].strip() and lines[at + 3] == ""  # the line on what and how
    header = _cells(lines[at + 4])
    assert _cells(lines[at + 5]) == ["---"] * len(header) and header[-1] == NOTE
    rows = []
    for line in lines[at + 6 :]:
        if not line.startswith("|"):
            break
        cells = _cells(line)
        assert len(cells) == len(header), line
        rows.append(dict(zip(header, cells)))
    return rows


def _cells(line: str) -> list[str]:
    assert line.startswith("| ") and line.endswith(" |"), line
    return [c.strip() for c in line[2:-2].split(" | ")]


def run_section(section: str, summary: Path) -> list[dict[str, str]]:
    assert main([section, "--summary", str(summary), "--device", "cpu", "--quick"]) == 0
    return table(summary.read_text(), section)


def test_bad_section_exits_2_with_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bench.speed.gpu", "speeed", "--summary", str(tmp_path / "s.md"),
                           "--device", "cpu"], cwd=REPO, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "invalid choice: 'speeed'" in done.stderr
    assert not (tmp_path / "s.md").exists()


def test_cuda_asked_without_a_usable_gpu_exits_2_with_one_line(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-m", "bench.speed.gpu", "peak", "--summary", str(tmp_path / "s.md"),
                           "--device", "cuda"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "sees no usable GPU" in done.stderr
    assert not (tmp_path / "s.md").exists()


def test_mfu_arithmetic_on_a_known_flop_count():
    a, b = torch.randn(8, 16), torch.randn(16, 32)
    flops = steps.count_flops(lambda: torch.mm(a, b))
    assert flops == 2 * 8 * 16 * 32
    assert steps.achieved_tflops(2e12, 10.0) == pytest.approx(200.0)
    assert steps.mfu(2e12, 10.0, 800.0) == pytest.approx(0.25)
    assert steps.mfu(flops, 1e-3, 1.0) == pytest.approx(flops / 1e-6 / 1e12)


def test_rows_reach_the_file_as_written_and_a_failing_row_goes_on(tmp_path):
    path = tmp_path / "summary.md"
    s = Section.start(path, "demo", "what and how", ["name", "ms", NOTE])
    s.row({"name": "first", "ms": 1.23456})
    assert "| first | 1.23 |  |" in path.read_text()  # another reader sees it while the section is open

    def boom() -> dict:
        raise ValueError("boom | with a pipe\nand a second line")

    assert s.attempt({"name": "second"}, boom) is None
    assert s.attempt({"name": "third"}, lambda: {"ms": 250.0}) == {"ms": 250.0}
    rows = table(path.read_text(), "demo")
    assert [r["name"] for r in rows] == ["first", "second", "third"]
    assert rows[1][NOTE] == "error: ValueError: boom \\| with a pipe" and rows[2]["ms"] == "250"
    with pytest.raises(ValueError, match="not in this table"):
        s.row({"typo": 1})


def test_a_crashed_section_exits_1_and_says_so(tmp_path, monkeypatch):
    def crash(ctx: Context) -> None:
        ctx.section("peak: matmul rate", "about", ["x", NOTE]).row({"x": 1})
        raise RuntimeError("device lost")

    monkeypatch.setattr(peak, "run", crash)
    summary = tmp_path / "summary.md"
    assert main(["peak", "--summary", str(summary), "--device", "cpu", "--quick"]) == 1
    text = summary.read_text()
    assert table(text, "peak") == [{"x": "1", NOTE: ""}]
    assert text.rstrip().endswith("**peak stopped**: RuntimeError: device lost")


def test_peak_section_writes_rows_and_peak_json(tmp_path, monkeypatch):
    monkeypatch.setattr(peak, "QUICK_N", 64)
    rows = run_section("peak", tmp_path / "summary.md")
    assert [r["precision"] for r in rows] == ["bf16", "fp32"]
    assert all(float(r["TFLOP/s"]) > 0 and r[NOTE] == "" for r in rows)
    assert set(peak.read_peaks(tmp_path / "summary.md")) == {"bf16", "fp32"}


def test_search_section(tmp_path, monkeypatch):
    monkeypatch.setattr(search, "QUICK_SHAPES", [Shape(2, 4, 4, 8, 64), Shape(2, 4, 4, 8, 256)])
    rows = run_section("search", tmp_path / "summary.md")
    assert [(r["K"], r["N"], r["D"]) for r in rows] == [("64", "32", "8"), ("256", "32", "8")]
    assert all(float(r["search ms"]) > 0 and float(r["search / bound"]) > 0 and r[NOTE] == "" for r in rows)


def test_eval_section_without_weight_files_uses_random_weights_and_says_so(tmp_path, monkeypatch):
    """As on the GPU machines: no FID Inception file, no LPIPS network that loads."""
    from bench.evaluation.metrics import fid, lpips

    def absent(*args, **kwargs):
        raise FileNotFoundError("no weights on this machine")

    monkeypatch.setattr(fid, "get_extractor", absent)
    monkeypatch.setattr(lpips, "get_network", absent)
    monkeypatch.setattr(evaluation, "RESOLUTION", 64)
    rows = run_section("eval", tmp_path / "summary.md")
    assert [(r["network"], r["weights"]) for r in rows] == [(evaluation.INCEPTION, "random weights"),
                                                          (evaluation.LPIPS, "lpips-alex (random weights)")]
    assert all(float(r["images/s"]) > 0 and r["precision"] == evaluation.FP32 and r[NOTE] == "" for r in rows)


def test_a_step_without_its_perceptual_network_gets_random_lpips_vgg():
    from types import SimpleNamespace

    from bench.speed.gpu import stand_ins

    learner = SimpleNamespace(perceptual=None, perceptual_name="none", t=SimpleNamespace(perceptual_weight=1.0))
    assert stand_ins.training_perceptual(learner, CPU) == "lpips-vgg (random weights)"
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert learner.perceptual(x, x * 0.5).shape == (1, 1, 1, 1)
    off = SimpleNamespace(perceptual=None, perceptual_name="off", t=SimpleNamespace(perceptual_weight=0.0))
    assert stand_ins.training_perceptual(off, CPU) == "off" and off.perceptual is None


def test_steps_section_times_each_variant_with_its_mfu(tmp_path, monkeypatch):
    monkeypatch.setattr(steps, "METHODS", ("vqgan",))
    monkeypatch.setattr(peak, "QUICK_N", 64)
    rows = run_section("steps", tmp_path / "new folder" / "summary.md")
    assert [r["variant"] for r in rows] == ["fp32, contiguous (default)", "fp32, channels-last", "bf16, contiguous",
                                            "fp32, contiguous, compiled"]
    timed, compiled = rows[:3], rows[3]
    for r in timed:
        assert r[NOTE] == "" and r["preset"] == "smoke" and r["batch"] == str(steps.QUICK_BATCH)
        gflop, ms, tflops = float(r["GFLOP/step"]), float(r["ms/step"]), float(r["TFLOP/s"])
        assert gflop > 0 and ms > 0 and tflops == pytest.approx(gflop / ms, rel=0.02)
        assert float(r["MFU"]) > 0
    assert compiled[NOTE].startswith("not run: --compile is timed on the GPU only")
    # no peak.json before: the section measured the rates; fp32 rows against fp32's, bf16's against bf16's
    peaks = peak.read_peaks(tmp_path / "new folder" / "summary.md")
    for r in timed:
        rate = peaks["bf16" if r["variant"].startswith("bf16") else "fp32"]
        assert float(r["MFU"]) == pytest.approx(float(r["TFLOP/s"]) / rate, rel=0.02)


def test_train_step_variants_hook_keeps_the_default():
    from bench.training.step import TrainStep

    run = steps.step_setup("smoke", "vqgan", CPU).run
    default = TrainStep(run, CPU)
    assert default.use_bf16 is False and default.memory_format == torch.contiguous_format
    forced = TrainStep(run, CPU, bf16=True, channels_last=True)
    assert forced.use_bf16 is True and forced.memory_format == torch.channels_last
    conv = forced.model.encoder.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()


def test_resume_section_rows_with_the_runs_stubbed(tmp_path, monkeypatch):
    """The table and the comparisons, the three runs replaced by records and checkpoints written here
    (run b's weights off by 0.5): the real runs are the slow test below."""
    from safetensors.torch import save_file

    def fake_run(spec, out, shift=0.0):
        folder = resume.run_dir(spec, out)
        folder.mkdir(parents=True)
        save_file({"model.w": torch.ones(2) + shift, "disc.w": torch.zeros(1)}, str(folder / "checkpoint.safetensors"))
        return {"status": "finished", "steps_done": spec.steps, "resumed_from": 1 if shift else 0,
                "metrics": {"psnr": 20.0 + shift, "fid": None}}

    monkeypatch.setattr(resume, "run_in", fake_run)
    monkeypatch.setattr(resume, "killed_then_resumed", lambda spec, out: (fake_run(spec, out, 0.5), "killed"))
    rows = run_section("resume", tmp_path / "summary.md")
    assert [r["run"] for r in rows] == [*resume.RUNS.values(), "a vs b", "a vs c"]
    assert [r["resumed from"] for r in rows[:3]] == ["0", "1", "0"] and rows[1][NOTE] == "killed"
    a_b, a_c = rows[3], rows[4]
    assert (a_b["metrics max abs diff"], a_b["metrics equal"], a_b["weights max abs diff"], a_b["weights equal"],
            a_b[NOTE]) == ("0.5", "no", "0.5", "no", "largest in psnr")
    assert (a_c["metrics max abs diff"], a_c["metrics equal"], a_c["weights max abs diff"], a_c["weights equal"]) == (
        "0", "yes", "0", "yes")


@pytest.mark.slow  # three short runs, one of them in a subprocess, each evaluated: ~1.5 min on the shared CPU
def test_resume_section_finds_a_killed_run_equal_on_the_cpu(tmp_path, monkeypatch):
    monkeypatch.setattr(resume, "QUICK_STEPS", 4)
    rows = run_section("resume", tmp_path / "summary.md")
    by_run = {r["run"]: r for r in rows}
    for label in resume.RUNS.values():
        assert by_run[label]["status"] == "finished" and by_run[label]["steps"] == "4"
    assert 0 < int(by_run[resume.RUNS["b"]]["resumed from"]) < 4
    for pair in ("a vs b", "a vs c"):  # on the CPU a resumed run and a repeated one are bit-exact
        assert by_run[pair]["metrics equal"] == "yes" and by_run[pair]["weights equal"] == "yes"
        assert float(by_run[pair]["metrics max abs diff"]) == 0 and float(by_run[pair]["weights max abs diff"]) == 0


def test_metric_and_weight_differences():
    assert resume.metrics_difference({"psnr": 20.0, "fid": None}, {"psnr": 20.0, "fid": None}) == (0.0, True, "")
    diff, equal, worst = resume.metrics_difference({"psnr": 20.0, "ssim": 0.5}, {"psnr": 20.5, "ssim": 0.5})
    assert (diff, equal, worst) == (0.5, False, "psnr")
    assert resume.metrics_difference({"a": math.nan}, {"a": math.nan})[:2] == (0.0, True)
    assert resume.metrics_difference({"a": 1.0}, {"a": None})[:2] == (math.inf, False)


def test_weight_difference_of_two_checkpoints(tmp_path):
    from safetensors.torch import save_file

    w = {"model.w": torch.ones(3), "disc.b": torch.zeros(2), "opt_g.state.0.exp_avg": torch.ones(3)}
    save_file(w, str(tmp_path / "a.safetensors"))
    save_file({**w, "model.w": torch.tensor([1.0, 1.25, 1.0]), "opt_g.state.0.exp_avg": torch.zeros(3)},
              str(tmp_path / "b.safetensors"))
    assert resume.weights_difference(tmp_path / "a.safetensors", tmp_path / "a.safetensors") == (0.0, True)
    assert resume.weights_difference(tmp_path / "a.safetensors", tmp_path / "b.safetensors") == (0.25, False)


def test_a_section_killed_after_its_first_row_keeps_it(tmp_path):
    summary = tmp_path / "summary.md"
    proc = subprocess.Popen([sys.executable, "-m", "bench.speed.gpu", "steps", "--summary", str(summary),
                             "--device", "cpu", "--quick"], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not (summary.exists() and "\n| smoke |" in summary.read_text()):
            assert proc.poll() is None, "the section ended before its first row"
            assert time.time() < deadline, "no row within 300 s"
            time.sleep(0.05)
        assert proc.poll() is None  # the row was on disk while the section was still running
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    rows = table(summary.read_text(), "steps")
    assert rows and rows[0]["preset"] == "smoke" and rows[0]["method"] == "vqgan"
    assert float(rows[0]["ms/step"]) > 0


def test_cuda_variants_start_with_the_trainers_own_choice():
    """What the GPU runs, checked without one: TrainStep's CUDA choice first, then each flip."""
    cuda = torch.device("cuda")
    assert [v.label for v in steps.variants(cuda)] == ["bf16, channels-last (default)", "bf16, contiguous",
                                                       "fp32, channels-last"]
    ctx = Context(Path("summary.md"), cuda, quick=False)
    assert [v.label for v in peak.variants(ctx)] == ["bf16", "fp32, TF32 on", "fp32, TF32 off"]
    assert [v.tf32 for v in peak.variants(ctx)] == [None, True, False]
    assert peak.reference(ctx, bf16=True) == "bf16" and peak.reference(ctx, bf16=False) == (
        "fp32, TF32 on" if precision.tf32_enabled("conv") else "fp32, TF32 off")
    assert peak.reference(Context(Path("summary.md"), CPU, quick=True), bf16=False) == "fp32"


def test_eval_precision_turns_tf32_off_and_restores_it():
    saved = precision.current_flags()
    try:
        with precision.matmul_tf32(True):
            conv = precision.tf32_enabled("conv")
            assert precision.tf32_enabled("matmul")
            with evaluation.precision(CPU, evaluation.FP32):
                assert not precision.tf32_enabled("conv") and not precision.tf32_enabled("matmul")
                assert not torch.is_autocast_enabled("cpu")
            assert precision.tf32_enabled("matmul") and precision.tf32_enabled("conv") == conv
            with evaluation.precision(CPU, evaluation.BF16):
                assert torch.is_autocast_enabled("cpu") and precision.tf32_enabled("matmul")
    finally:
        precision.restore_flags(saved)


def test_tf32_flags_are_read_without_mixing_the_two_apis():
    """torch >= 2.9 raises on reading the legacy `allow_tf32` after the legacy and the new API both set
    it (seen under torch 2.11, the GPU image's: the peak, steps and eval sections failed). The sections
    read and set TF32 only through bench.evaluation.precision, which keeps to one API."""
    saved = precision.current_flags()
    try:
        torch.backends.cuda.matmul.allow_tf32 = True  # a caller's legacy setting, then the new API inside
        with precision.matmul_tf32(True):
            with precision.evaluation_precision("cpu"):
                assert not precision.tf32_enabled("matmul")
            with precision.matmul_tf32(False):
                assert not precision.tf32_enabled("matmul")
            assert precision.tf32_enabled("matmul")
            assert peak.reference(Context(Path("summary.md"), torch.device("cuda"), quick=False), bf16=False)
    finally:
        precision.restore_flags(saved)


@pytest.mark.gpu  # the sections' CUDA paths (allocator peaks, bf16 rows, TF32 rows), quick sizes
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("section", ["peak", "search", "eval", "steps"])
def test_quick_sections_on_cuda(tmp_path, section):
    summary = tmp_path / "summary.md"
    assert main([section, "--summary", str(summary), "--device", "cuda", "--quick"]) == 0
    rows = table(summary.read_text(), section)
    assert rows and not any(r[NOTE].startswith("error") for r in rows)
