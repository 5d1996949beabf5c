"""Tables from hand-written records with known values (tests/bench/reporting/results_fixture.py): means and
stds, best/second marks on the right cells, failed and missing runs kept, every format parsed back."""
from __future__ import annotations

import io
import math
import re
from pathlib import Path

import pandas as pd
import pytest

from bench import api
from bench.cli import main as cli
from bench.core import run_folder
from bench.core.atomic import write_json_atomic
from bench.reporting import reported, tables
from bench.reporting.summary import build
from tests.bench.reporting.results_fixture import write_fixture


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("results")
    write_fixture(folder, images=False)
    return folder


@pytest.fixture(scope="module")
def built(out):
    return build(out)


def row(summ: pd.DataFrame, dataset: str, method: str, k: int) -> pd.Series:
    hit = summ[(summ["Dataset"] == dataset) & (summ["Method"] == method) & (summ["Codebook size"] == k)]
    assert len(hit) == 1, hit
    return hit.iloc[0]


def test_mean_and_sample_std_over_seeds(built):
    r = row(built.per_dataset, "photos", "vqgan", 16)
    assert r["fid"] == pytest.approx(12.0) and r["fid_std"] == pytest.approx(math.sqrt(8))
    assert r["psnr"] == pytest.approx(21.0) and r["psnr_std"] == pytest.approx(math.sqrt(2))
    assert r["utilization"] == pytest.approx(62.5)  # shown in percent
    assert r["Finished"] == 2 and r["Expected"] == 2 and r["Status"] == "ok"
    one = row(built.per_dataset, "photos", "vqct", 16)
    assert one["psnr"] == pytest.approx(25.0) and pd.isna(one["psnr_std"])  # one seed: no std


def test_failed_and_missing_runs_keep_their_rows(built):
    failed = row(built.per_dataset, "photos", "lfq", 16)
    assert failed["Status"] == "failed" and failed["Failed"] == 1 and pd.isna(failed["psnr"])
    missing = row(built.per_dataset, "photos", "vqct", 32)
    assert missing["Status"] == "missing" and missing["Finished"] == 0
    text = tables.render(built, "terminal")
    assert "0/2 (1 failed)" in text and "missing" in text
    assert "NonFiniteLoss" in text  # the failure's error is in the notes


def _md_tables(text: str) -> dict[str, pd.DataFrame]:
    """Parse the Markdown output back: {dataset: frame of cell strings}."""
    out, current, lines = {}, None, []
    for line in text.splitlines() + [""]:
        m = re.match(r"### Reconstruction on (.+)", line)
        if m:
            current, lines = m.group(1), []
        elif line.startswith("|") and current:
            lines.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
        elif lines and current:
            out[current] = pd.DataFrame(lines[2:], columns=lines[0])
            current, lines = None, []
    return out


def _half(cell: str) -> float:
    """The ± part of a cell's text."""
    m = re.search(r"± ([0-9.]+)", cell)
    assert m, cell
    return float(m.group(1))


def test_markdown_bold_best_underline_second_and_arrows(built):
    md = _md_tables(tables.render(built, "md"))
    photos = md["photos"].set_index(["Method", "Codebook size"])
    assert {"rFID (vs val) ↓", "PSNR ↑", "SSIM ↑", "LPIPS ↓", "Usage % ↑", "Perplexity", "Runs", "Images",
            "95% interval"} <= set(photos.columns)
    # rFID: the fixture stores no Inception features, so no interval and nothing to test: no marks
    assert photos.loc[("vqct", "16"), "rFID (vs val) ↓"] == "8.00†"
    assert photos.loc[("vqgan", "32"), "rFID (vs val) ↓"] == "9.00" and photos.loc[("vqgan", "16"), "rFID (vs val) ↓"] == "12.00"
    # PSNR (higher is better): vqct 25 best, resolved on the same 64 images; vqgan K=32 23 second
    assert re.fullmatch(r"\*\*25\.00 ± 0\.\d\d\*\*", photos.loc[("vqct", "16"), "PSNR ↑"])
    assert re.fullmatch(r"<u>23\.00 ± 0\.\d\d</u>", photos.loc[("vqgan", "32"), "PSNR ↑"])
    # the image bootstrap of a mean of 64 values with sd ~2.01: half-width ~ 1.96 * 2.01 / 8
    assert _half(photos.loc[("vqct", "16"), "PSNR ↑"]) == pytest.approx(1.96 * 2.01 / 8, rel=0.15)
    # SSIM: vqct and vqgan K=16 both show 0.5500 behind vqgan K=32's 0.5800: they share the underline
    assert photos.loc[("vqgan", "32"), "SSIM ↑"].startswith("**0.5800 ±")
    assert photos.loc[("vqct", "16"), "SSIM ↑"].startswith("<u>0.5500")
    assert photos.loc[("vqgan", "16"), "SSIM ↑"].startswith("<u>0.5500")
    # Usage: a whole-split histogram with fewer than 3 seeds: no interval, no test, no marks
    assert photos.loc[("vqct", "16"), "Usage % ↑"] == "100.0" and photos.loc[("vqgan", "16"), "Usage % ↑"] == "62.5"
    assert not any("**" in c or "<u>" in c for c in photos["Perplexity"])
    assert photos.loc[("lfq", "16"), "Runs"] == "0/2 (1 failed)"
    assert photos.loc[("vqgan", "16"), "Images"] == "64"
    assert photos.loc[("vqgan", "16"), "95% interval"] == "images, 2 seeds"
    assert photos.loc[("vqct", "16"), "95% interval"] == "images, 1 seed"
    text = tables.render(built, "md")
    assert "No marks (nothing to test" in text and "Usage % on photos" in text
    assert "holds for these trained models on these images only" in text
    # the note states the rule, not one benchmark's history: its only number is the seed threshold
    note = next(line for line in text.splitlines() if "on these images only" in line)
    assert "another seed or machine can reverse it" in note
    assert re.findall(r"\d+(?:\.\d+)?", note) == ["3", "3"], note


def test_latex_booktabs_marks_and_parse_back(built):
    tex = tables.render(built, "tex")
    assert tex.count(r"\toprule") == 2 and tex.count(r"\midrule") == 2 and tex.count(r"\bottomrule") == 2
    assert r"rFID (vs val) $\downarrow$" in tex and r"PSNR $\uparrow$" in tex and r"Usage \% $\uparrow$" in tex
    photos = tex.split(r"\caption{Reconstruction on photos}")[1].split(r"\bottomrule")[0]
    rows = {}
    for line in photos.split(r"\midrule")[1].strip().splitlines():
        cells = [c.strip() for c in line.rstrip("\\ ").split(" & ")]
        rows[(cells[0], cells[1])] = cells
    header = [h.strip() for h in photos.split(r"\toprule")[1].split(r"\midrule")[0].rstrip("\\ \n").split(" & ")]
    fid = header.index(r"rFID (vs val) $\downarrow$")
    psnr = header.index(r"PSNR $\uparrow$")
    assert rows[("vqct", "16")][fid] == r"8.00$^\dagger$"
    assert re.fullmatch(r"\\textbf\{25\.00 \$\\pm\$ 0\.\d\d\}", rows[("vqct", "16")][psnr])
    assert re.fullmatch(r"\\underline\{23\.00 \$\\pm\$ 0\.\d\d\}", rows[("vqgan", "32")][psnr])


def test_csv_parses_back_to_the_same_frame(built):
    back = pd.read_csv(io.StringIO(tables.render(built, "csv")))
    summ = built.per_dataset
    assert list(back.columns) == list(summ.columns)
    for col in ("fid", "fid_std", "psnr", "utilization"):
        pd.testing.assert_series_equal(back[col].astype(float), summ[col].astype(float), check_names=False)
    assert back.loc[back["Status"] == "failed", "Method"].tolist() == ["lfq"]


def test_terminal_parses_back(built):
    text = tables.render(built, "terminal")
    block = text.split("Reconstruction on cub200\n")[1].split("\n\n")[0].splitlines()
    header = [c.strip() for c in block[0].strip("|").split("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in block[2:]]
    df = pd.DataFrame(cells, columns=header).set_index("Method")
    assert df.loc["vqct", "rFID (vs val) ↓"] == "20.00†"  # 1024 FID images: dagger
    assert df.loc["vqgan", "rFID (vs val) ↓"] == "30.00"   # 4096 FID images: none
    assert df.loc["vqct", "Usage % ↑"] == "90.0"


def test_fid_dagger_footnote(built):
    text = tables.render(built, "md")
    assert "† rFID from fewer than 2048 images (n = 1024)" in text


def test_cross_dataset_summary(built, out):
    cross = built.cross
    assert cross is not None and cross.attrs["metric"] == "fid"
    vqct = cross[(cross["Method"] == "vqct") & (cross["Codebook size"] == 16)].iloc[0]
    assert vqct["photos"] == pytest.approx(8.0) and vqct["cub200"] == pytest.approx(20.0)
    md = tables.render_cross(built, "md")
    # no features in the fixture: rFID untested, so no marks and no resolved wins; the mean rank goes by value
    assert "| vqct | 16 | 20.00† | 8.00† | 1.0 | 0 |" in md
    assert "| vqgan | 16 | 30.00 | 12.00 | 2.5 | 0 |" in md
    psnr = build(out, metrics=["psnr"]).cross
    assert psnr is not None and psnr.attrs["metric"] == "psnr"
    wins = psnr.set_index(["Method", "Codebook size"])
    # PSNR: vqgan resolved best on cub200, vqct on photos: one resolved win each; ranks by value
    assert wins.loc[("vqct", 16), "Resolved wins"] == 1 and wins.loc[("vqgan", 16), "Resolved wins"] == 1
    assert wins.loc[("vqct", 16), "Mean rank"] == pytest.approx(1.5)  # 2nd on cub200, 1st on photos
    assert wins.loc[("vqgan", 16), "Mean rank"] == pytest.approx(2.0)  # 1st on cub200, 3rd on photos
    text = tables.render_cross(build(out, metrics=["psnr"]), "md")
    assert "Resolved wins: the datasets where the row alone holds the bold mark" in text


def test_filters_metrics_and_group_by(out):
    b = build(out, methods=["vqgan"], datasets=["photos"], metrics=["psnr", "utilization_adj"])
    summ = b.per_dataset
    assert set(summ["Method"]) == {"vqgan"} and set(summ["Dataset"]) == {"photos"}
    assert tables.metrics_of(summ) == ["psnr", "utilization_adj"]
    assert "Usage % (adj) ↑" in tables.render(b, "md")
    by_seed = build(out, datasets=["photos"], group_by=["method", "codebook_size", "seed"]).per_dataset
    assert len(by_seed[(by_seed["Method"] == "vqgan") & (by_seed["Codebook size"] == 16)]) == 2
    with pytest.raises(ValueError, match="did you mean fid"):
        build(out, metrics=["fdi"])
    with pytest.raises(ValueError, match="cannot group by"):
        build(out, group_by=["methd"])


def test_protocols_are_never_averaged_together(tmp_path):
    recs = write_fixture(tmp_path, images=False)
    r = dict(recs[0], run_id="photos-vqgan-k16-s0-paper", config=dict(recs[0]["config"], preset="paper", steps=1000))
    write_json_atomic(run_folder.runs_dir(tmp_path) / r["run_id"] / run_folder.RECORD, r)
    summ = build(tmp_path, datasets=["photos"]).per_dataset
    vq16 = summ[(summ["Method"] == "vqgan") & (summ["Codebook size"] == 16)]
    assert set(vq16["Preset"]) == {"cpu-tiny", "paper"} and "Steps" in summ.columns


def test_positions_and_indices_per_image_in_every_format(built):
    """Positions from record["tokens"], indices from record["indices_per_image"] (the fixture's vqct:
    3 per position); rows without a finished run have neither."""
    photos = _md_tables(tables.render(built, "md"))["photos"].set_index(["Method", "Codebook size"])
    assert photos.loc[("vqct", "16"), ["Positions", "Indices per image"]].tolist() == ["16", "48"]
    assert photos.loc[("vqgan", "16"), ["Positions", "Indices per image"]].tolist() == ["16", "16"]
    assert photos.loc[("lfq", "16"), ["Positions", "Indices per image"]].tolist() == ["—", "—"]  # failed
    assert photos.loc[("vqct", "32"), ["Positions", "Indices per image"]].tolist() == ["—", "—"]  # missing
    back = pd.read_csv(io.StringIO(tables.render(built, "csv")))
    vqct = back[(back["Method"] == "vqct") & (back["Codebook size"] == 16) & (back["Dataset"] == "photos")].iloc[0]
    assert (vqct["Positions"], vqct["Indices per image"]) == (16, 48)  # integers, not "16 x 3" text
    assert r"Positions & Indices per image & rFID" in tables.render(built, "tex")
    assert "| Positions   | Indices per image   |" in tables.render(built, "terminal")


def test_a_group_shows_a_layout_only_when_its_runs_agree():
    from bench.reporting.frames import _layout_value

    assert _layout_value(pd.Series([48, 48, None])) == 48  # a run without it (an older record) does not hide it
    assert _layout_value(pd.Series([48, 32])) is None  # runs that differ (method options): shown empty
    assert _layout_value(pd.Series([None, None])) is None


def test_reported_rows_are_marked_and_never_ranked(out):
    b = build(out, datasets=["cub200"], with_reported=True)
    summ = b.per_dataset
    rep = summ[summ["Source"] == tables.REPORTED]
    assert len(rep) >= 3 and set(rep["Ref"]) == {"lgvq2024", "lgvq2024-table12"}
    md = tables.render(b, "md")
    cub = _md_tables(md)["cub200"].set_index("Method")
    # CVQ's published 3.61 would be the best rFID and VQ-VAE's 24.38 the best PSNR, but reported rows
    # are italic and unranked: vqgan's 19.00 keeps the (resolved) best PSNR
    assert cub.loc["*CVQ [R1]*", "rFID (vs val) ↓"] == "*3.61*"
    assert cub.loc["*VQ-VAE [R1]*", "PSNR ↑"] == "*24.38*"
    assert cub.loc["vqgan", "PSNR ↑"].startswith("**19.00 ±")
    assert cub.loc["*CVQ [R1]*", "Runs"] == "*reported*"
    assert "[R1] Liang et al., LG-VQ" in md and "openreview.net" in md
    # LG-VQ Table 12 quotes VQCT at its whole vocabulary; its "512 tokens" is LG-VQ's own count
    assert cub.loc["*VQCT [R2]*", "rFID (vs val) ↓"] == "*2.13*" and cub.loc["*VQCT [R2]*", "Codebook size"] == "*6207*"
    assert cub.loc["*VQCT [R2]*", ["Positions", "Indices per image"]].tolist() == ["—", "—"]
    assert cub.loc["*CVQ [R1]*", ["Positions", "Indices per image"]].tolist() == ["*256*", "*256*"]
    assert "[R2] Liang et al., LG-VQ: Language-Guided Codebook Learning (NeurIPS 2024), Table 12" in md
    assert "- VQCT [R2]: 512 tokens per image as its source counts them" in md
    assert "CVQ+LG [R2]" in md and "512 tokens" not in md.split("- VQCT [R2]")[0]  # one note, only for VQCT


def test_lgvq_table_12_rows_as_read(out):
    """The rows of LG-VQ's Appendix A.2 Table 12, as checked against the paper's text: rFID per dataset,
    codebook size and LG-VQ's token count; its +LG rows repeat LG-VQ's Table 1."""
    df = reported.load()
    t12 = df[df["ref"] == "lgvq2024-table12"].set_index(["method", "dataset"])
    want = {"VQCT": (6207, 512, (5.02, 2.13, 9.82)), "VQ-GAN+LG": (1024, 256, (5.34, 3.08, 10.72)),
            "CVQ+LG": (1024, 256, (4.90, 3.33, 9.69))}
    assert len(t12) == 9
    for method, (k, tokens, fids) in want.items():
        for dataset, fid in zip(("celebahq", "cub200", "mscoco"), fids):
            r = t12.loc[(method, dataset)]
            assert (r["codebook_size"], r["tokens"], r["fid"]) == (k, tokens, fid)
            assert pd.isna(r["psnr"]) and r["table"] == "Table 12 (Appendix A.2)"
    assert t12.loc[("VQCT", "cub200"), "vqbench_method"] == "vqct"
    assert t12.loc[("VQCT", "cub200"), ["positions", "indices_per_image"]].isna().all()  # not stated: left empty
    b = build(out, datasets=["cub200"], methods=["vqct"], with_reported=True)
    rows = b.per_dataset[b.per_dataset["Source"] == tables.REPORTED]
    assert rows["Method"].tolist() == ["VQCT"]  # --methods vqct keeps the quoted VQCT row only


def test_reported_data_file_rows_all_name_source_and_protocol():
    df = reported.load()
    assert len(df) > 0
    for col in ("paper", "table", "url", "protocol"):
        assert df[col].astype(str).str.len().min() > 3
    assert df["url"].str.startswith("https://").all()
    assert set(df["dataset"]) <= {"ade20k", "celebahq", "cub200", "mscoco", "imagenet", "ffhq"}
    assert df["utilization"].dropna().between(0, 1).all()


def test_api_table_still_returns_the_summary(out):
    df = api.table(out, methods=["vqgan"], datasets=["photos"])
    assert set(df["Method"]) == {"vqgan"} and {"fid", "psnr", "Finished", "Failed"} <= set(df.columns)


def test_cli_table_formats_and_files(out, capsys):
    assert cli.main(["table", "--out", str(out), "--format", "csv", "--metrics", "fid,psnr"]) == 0
    back = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert {"fid", "psnr", "Status"} <= set(back.columns)
    for name in ("results.md", "results.csv", "results.tex", "results_summary.md"):
        assert (out / "tables" / name).is_file()
    assert cli.main(["table", "--out", str(out), "--with-reported", "--datasets", "cub200", "--format", "md"]) == 0
    printed = capsys.readouterr().out
    assert "*reported*" in printed and "| *VQCT [R2]* | *6207* | — | — | *2.13* |" in printed
    for fmt in ("terminal", "tex", "html", "csv"):  # every format renders the published rows
        assert cli.main(["table", "--out", str(out), "--with-reported", "--datasets", "mscoco,cub200",
                         "--format", fmt]) == 0
        assert "9.82" in capsys.readouterr().out
    assert cli.main(["table", "--out", str(out), "--metrics", "nope"]) == 2
    assert "unknown metric 'nope'" in capsys.readouterr().err
    assert cli.main(["table", "--out", str(out / "empty")]) == 2
