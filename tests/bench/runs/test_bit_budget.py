"""`--bits-per-image B`: each method's K whose bits per image at the preset's grid are closest to B,
printed before the grid starts; a budget a method cannot reach within 5% is refused with one line."""
import pytest
import torch

import methods
from bench.core.errors import UserError
from bench.runs import bit_budget


@pytest.mark.parametrize("name", methods.available())
def test_the_budget_rule_agrees_with_the_built_quantizer(name):
    """budget_bits (before building) and bits_per_image (the record's) say the same for every method."""
    torch.manual_seed(0)
    q = methods.create(name, 64, 8).eval()
    with torch.no_grad():
        q(torch.randn(1, q.latent_channels, 4, 4))
    options = methods.build_options(name)
    assert methods.entry(name).cls.budget_bits(64, 8, options, 4) == pytest.approx(q.bits_per_image(4, 4))


def test_the_issues_smoke_grid_at_512_bits():
    """smoke: an 8 x 8 grid, so 8 bits per position."""
    picked = {c.method: c for c in bit_budget.choose_all(["vqgan", "vqct", "rvq", "pq", "fsq"], {}, [512.0], "smoke")}
    assert {m: c.codebook_size for m, c in picked.items() if m != "vqct"} == {"vqgan": 256, "rvq": 4, "pq": 16,
                                                                              "fsq": 256}
    for c in picked.values():
        assert abs(c.bits / 512 - 1) <= 0.05, c
    assert picked["vqct"].bits == pytest.approx(
        methods.entry("vqct").cls.budget_bits(picked["vqct"].codebook_size, 16, methods.build_options("vqct"), 8))


def test_options_stay_as_given_and_only_k_varies():
    assert bit_budget.choose("rvq", {"levels": 2}, 512, "smoke").codebook_size == 16
    assert bit_budget.choose("pq", {"groups": 4}, 512, "smoke").codebook_size == 4


def test_a_method_with_valid_sizes_only_takes_one_of_them():
    """LFQ accepts powers of two only: at 8.3 bits per position (K = 315 for vqgan) it takes 256 (-3.6%)."""
    assert bit_budget.choose("vqgan", {}, 8.3 * 64, "smoke").codebook_size == 315
    choice = bit_budget.choose("lfq", {}, 8.3 * 64, "smoke")
    assert choice.codebook_size == 256 and choice.bits == 512


def test_fsq_reaches_a_large_budget_through_many_refused_sizes():
    """1024 bits at smoke's 8x8 grid is K = 2^16 for fsq; the search on its way asks fsq about many sizes
    no levels give, each refusal naming the nearest valid sizes (which used to factorise every size
    below K: about two minutes for this one choice)."""
    from methods import fsq

    assert bit_budget.choose("fsq", {}, 1024, "smoke").codebook_size == 65536
    assert fsq.nearest_valid_sizes(65537) == [64827, 65536, 65610, 65625]


def test_an_unreachable_budget_is_refused_with_one_line():
    with pytest.raises(UserError, match=r"leech's codebook is fixed \(K=196560\), 1125.4 bits") as err:
        bit_budget.choose("leech", {}, 512, "smoke")
    assert "\n" not in str(err.value)
    assert bit_budget.choose("leech", {}, 1125, "smoke").codebook_size == 196560
    with pytest.raises(UserError, match="lfq has no codebook size within 5%"):
        bit_budget.choose("lfq", {}, 9.5 * 64, "smoke")  # 2^9.5: neither 512 (-5.3%) nor 1024 (+5.3%)


def test_the_command_line_refuses_before_any_run(tmp_path, capsys):
    from bench.cli import main as cli

    code = cli.main(["--methods", "vqgan,leech", "--bits-per-image", "512", "--preset", "smoke", "--no-ray",
                     "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "leech" in err[0]
    assert not (tmp_path / "out" / "runs").exists()
    code = cli.main(["--methods", "vqgan", "--bits-per-image", "512", "--codebook-sizes", "16", "--preset", "smoke",
                     "--no-ray", "--out", str(tmp_path / "out")])
    assert code == 2 and "drop --codebook-sizes" in capsys.readouterr().err


def test_the_command_line_prints_the_choice_and_runs_it(tmp_path, capsys):
    from bench.cli import main as cli

    code = cli.main(["--methods", "rvq", "--bits-per-image", "256", "--preset", "smoke", "--steps", "2", "--no-ray",
                     "--no-progress", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0 and "bits per image 256 at 8x8 positions: rvq K=2 (256.0 bits, +0.0%)" in out
    assert "Bits per image" in out and "| 256 " in out.replace("│", "|")
