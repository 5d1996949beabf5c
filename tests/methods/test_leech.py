"""leech: the codebook is exactly the Leech lattice's first shell, and the code search is exact."""
import math

import pytest
import torch

import methods
from methods.leech import KISSING_NUMBER, golay_codewords, leech_minimal_vectors


def test_golay_code_has_the_extended_golay_weight_distribution():
    weights = torch.bincount(golay_codewords().long().sum(1), minlength=25)
    assert {w: int(weights[w]) for w in weights.nonzero().flatten().tolist()} == {0: 1, 8: 759, 12: 2576, 16: 759,
                                                                                24: 1}


def test_the_codebook_is_the_196560_distinct_minimal_vectors():
    v = leech_minimal_vectors()
    assert v.shape == (KISSING_NUMBER, 24) and len(torch.unique(v, dim=0)) == KISSING_NUMBER
    assert set(v.pow(2).sum(1).tolist()) == {32}  # one shell, squared norm 32 (4 x 8) in integer coordinates
    shapes = torch.sort(v.abs(), dim=1, descending=True).values[:, :2]
    counts = {(int(a), int(b)): n for (a, b), n in zip(*torch.unique(shapes, dim=0, return_counts=True))}
    assert counts == {(2, 2): 97_152, (3, 1): 98_304, (4, 4): 1_104}
    # Lattice points: x = m (mod 2) for all coordinates and sum(x) = 4m (mod 8)
    m = v[:, :1] % 2
    assert bool(((v - m) % 2 == 0).all()) and bool((v.sum(1) % 8 == (4 * m[:, 0]) % 8).all())


def test_inner_products_are_those_of_a_kissing_configuration():
    """Between minimal vectors of Λ24 (norm 4), inner products are 0, ±1, ±2 or ±4; x 8 here. So no two
    codes are closer than the shell's radius: the 196,560 spheres touch, never overlap."""
    v = leech_minimal_vectors().double()
    sample = v[torch.randperm(len(v), generator=torch.Generator().manual_seed(0))[:300]]
    dots = (sample @ v.t()).round().long()
    assert set(dots.unique().tolist()) <= {-32, -16, -8, 0, 8, 16, 32}
    assert int((dots == 32).sum()) == len(sample)  # each one only with itself


@pytest.mark.parametrize("spherical", [True, False])
def test_nearest_code_matches_brute_force_on_random_inputs(spherical):
    torch.manual_seed(0)
    q = methods.create("leech", KISSING_NUMBER, 8, blocks=2, radius=1.5, spherical=spherical).eval()
    z = torch.randn(3, 48, 4, 5) * 2
    with torch.no_grad():
        out = q(z)
    rows = z.permute(0, 2, 3, 1).reshape(-1, 24).double()
    dist = torch.cdist(rows, q.codes.double())
    best = dist.min(1)
    chosen = dist.gather(1, out.indices.reshape(-1, 1)).squeeze(1)
    torch.testing.assert_close(chosen, best.values, rtol=0, atol=1e-9)  # the chosen code is a nearest one
    second = dist.scatter(1, best.indices[:, None], math.inf).min(1).values
    clear = second - best.values > 1e-5
    assert clear.sum() > len(rows) // 2 and torch.equal(out.indices.reshape(-1)[clear], best.indices[clear])
    assert out.indices.shape == (3, 4, 5, 2) and float(out.loss) == 0.0
    torch.testing.assert_close(q.codes.norm(dim=1), torch.full((KISSING_NUMBER,), 1.5))


def test_fixed_codebook_declares_its_size_and_bits():
    q = methods.create("leech", 1024, 8, blocks=3)
    assert q.codebook_size == KISSING_NUMBER and q.latent_channels == 72 and not list(q.parameters())
    assert q.index_level_sizes() == (KISSING_NUMBER,) * 3
    assert methods.entry("leech").cls.full_codebook_size(8, q.options) == KISSING_NUMBER


def test_a_run_asking_another_k_is_refused_with_one_line():
    from bench.core.errors import UserError
    from bench.runs.config import RunConfig, resolve

    with pytest.raises(UserError, match=r"'leech' has a fixed codebook of 196,560 codes, so codebook size 1024") as err:
        resolve(RunConfig(method="leech", codebook_size=1024, preset="smoke"))
    assert "\n" not in str(err.value) and "--codebook-sizes full" in str(err.value)
    for k in (KISSING_NUMBER, "full"):
        assert resolve(RunConfig(method="leech", codebook_size=k, preset="smoke")).run_id.startswith("leech-photos-K196560-")


def test_the_command_line_refuses_before_any_run(tmp_path, capsys):
    from bench.cli import main as cli

    out = tmp_path / "out"
    code = cli.main(["--methods", "vqgan,leech", "--codebook-sizes", "1024", "--preset", "smoke", "--no-ray", "--out",
                     str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "fixed codebook of 196,560 codes" in err[0]
    assert not (out / "runs").exists()


def test_the_default_grid_gives_leech_its_own_k(monkeypatch):
    """Without --codebook-sizes the others take the preset's sizes and leech its own, once."""
    import dataclasses

    from bench.cli.run import build_parser, grid
    from bench.runs import presets

    monkeypatch.setitem(presets.PRESETS, "smoke", dataclasses.replace(presets.PRESETS["smoke"], codebook_sizes=(256, 1024)))
    opts = build_parser().parse_args(["--methods", "vqgan,leech", "--preset", "smoke", "--seeds", "0"])
    cells = sorted((c.method, c.codebook_size) for c in grid(opts)[1])
    assert cells == [("leech", KISSING_NUMBER), ("vqgan", 256), ("vqgan", 1024)]


def test_tables_show_no_missing_cells_across_a_fixed_codebook(tmp_path):
    """vqgan at K=256 and 1024 beside leech at its own K: leech at 256 or 1024 and vqgan at 196,560 are no
    cells of the grid, so no "missing" rows."""
    from bench.core import run_folder
    from bench.core.atomic import write_json_atomic
    from bench.reporting.summary import build
    from tests.bench.reporting.results_fixture import make_record

    metrics = {"psnr": 20.0, "utilization": 0.5, "perplexity": 4.0}
    for method, k in (("vqgan", 256), ("vqgan", 1024), ("leech", KISSING_NUMBER)):
        rec = make_record("photos", method, k, 0, metrics)
        (run_folder.runs_dir(tmp_path) / rec["run_id"]).mkdir(parents=True)
        write_json_atomic(run_folder.runs_dir(tmp_path) / rec["run_id"] / run_folder.RECORD, rec)
    frame = build(tmp_path, metrics=["psnr"]).per_dataset
    assert sorted(zip(frame["Method"], frame["Codebook size"], frame["Status"])) == [
        ("leech", KISSING_NUMBER, "ok"), ("vqgan", 256, "ok"), ("vqgan", 1024, "ok")]
