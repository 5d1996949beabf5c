"""The code entropy in the tables: by default beside usage and perplexity when the records carry it
(records of vqbench 0.1 have none and keep their layout), with its label and decimals."""
from __future__ import annotations

import numpy as np

from bench.reporting import tables
from bench.reporting.summary import build
from tests.bench.reporting.fake_runs import write_run
from tests.bench.reporting.test_tables import _md_tables


def test_entropy_columns_follow_perplexity_when_recorded(tmp_path):
    rng = np.random.default_rng(0)
    for method, bits in (("alpha", 3.2), ("beta", 2.4)):
        write_run(tmp_path, method, 0, {"psnr": rng.normal(20, 1, 40)},
                  metrics={"entropy_bits": bits, "entropy_ratio": bits / 4.0})  # K = 16: log2 K = 4
    md = _md_tables(tables.render(build(tmp_path), "md"))["photos"].set_index("Method")
    cols = list(md.columns)
    assert cols.index("Perplexity") + 1 == cols.index("Entropy (bits)") == cols.index("Entropy / log2 K ↑") - 1
    assert md.loc["alpha", "Entropy (bits)"] == "3.20" and md.loc["beta", "Entropy / log2 K ↑"] == "0.600"


def test_records_without_entropy_get_no_empty_entropy_columns(tmp_path):
    write_run(tmp_path, "alpha", 0, {"psnr": np.linspace(19, 21, 40)})
    md = _md_tables(tables.render(build(tmp_path), "md"))["photos"]
    assert "Perplexity" in md.columns and not any(c.startswith("Entropy") for c in md.columns)
