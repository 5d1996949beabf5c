"""A finished run records its bit budget: positions x the bits of one position, and that per pixel."""
import math

from bench.runs.config import RunConfig
from bench.runs.runner import run_one


def test_a_finished_run_records_bits_per_image_and_per_pixel(tmp_path):
    cfg = RunConfig(method="rvq", preset="smoke", codebook_size=16, steps=2, method_options={"levels": 2})
    rec = run_one(cfg, tmp_path, progress=False)
    assert rec["status"] == "finished", rec.get("error")
    resolution = rec["config"]["model"]["resolution"]
    assert rec["indices_per_image"] == 2 * rec["tokens"]
    assert rec["bits_per_image"] == rec["tokens"] * 2 * math.log2(16)
    assert math.isclose(rec["bits_per_pixel"], rec["bits_per_image"] / resolution ** 2)
