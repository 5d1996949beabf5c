"""The HTML report on a fixture of records: self-contained, every table and figure present, links to
run folders that exist; a Generation section (table and sample grids) when priors exist; and (marked `browser`) the page in headless Chromium: no console errors,
every table and figure shown."""
from __future__ import annotations

import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest

from bench.cli import main as cli
from bench.reporting import report
from tests.bench.reporting.results_fixture import write_fixture

FIGURES = 11  # code frequency, usage, reconstructions, code words and rate-distortion x 2 datasets, one sweep


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    """The fixture records, carrying their bits per image as the runner's records do: the report then
    has its rate-distortion figures."""
    folder = tmp_path_factory.mktemp("results")
    write_fixture(folder, bits=True)
    return folder


class Page(HTMLParser):
    """Tags of interest, with their attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, list[dict[str, str]]] = {}
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.setdefault(tag, []).append(dict(attrs))

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def page_path(out) -> Path:
    return report.write_report(out, with_reported=True)


@pytest.fixture(scope="module")
def page(page_path) -> Page:
    p = Page()
    p.feed(page_path.read_text(encoding="utf-8"))
    return p


def test_written_where_expected(out, page_path):
    assert page_path == out / "report.html"
    assert not list(out.glob(".report.html.tmp"))
    assert (out / "figures").is_dir()


def test_self_contained(page):
    assert "script" not in page.tags  # nothing runs, so nothing can fail in a browser
    assert "link" in page.tags and all(link["href"].startswith("data:") for link in page.tags["link"])
    imgs = page.tags["img"]
    assert imgs and all(img["src"].startswith("data:image/png;base64,") for img in imgs)
    assert all(img.get("alt") for img in imgs)


def test_every_table_and_figure(out, page):
    tabs = [t for t in page.tags["table"] if t.get("class") == "results"]
    assert len(tabs) == 3  # photos, cub200, and the cross-dataset summary
    pngs = sorted((out / "figures").glob("*.png"))
    assert len(page.tags["img"]) == len(pngs) == FIGURES
    figure_ids = {f["id"] for f in page.tags["figure"]}
    assert figure_ids == {f"fig-{p.stem}" for p in pngs}


def test_rate_distortion_figures_say_what_they_plot(page):
    figs = {f["id"] for f in page.tags["figure"]}
    assert {"fig-rate_distortion_photos", "fig-rate_distortion_cub200"} <= figs
    alts = [img["alt"] for img in page.tags["img"] if img["alt"].startswith("Rate-distortion on photos")]
    assert len(alts) == 1
    assert "rFID, PSNR, LPIPS against bits per image" in alts[0] and "95% bootstrap interval" in alts[0]
    assert alts[0] in " ".join(page.text)  # the caption says it too


def test_links_to_run_folders_and_svgs_resolve(out, page):
    hrefs = [a["href"] for a in page.tags["a"] if not a["href"].startswith(("#", "http"))]
    run_links = [h for h in hrefs if h.startswith("runs/")]
    assert len({h.split("/")[1] for h in run_links}) == 7  # every record, failed ones too
    for h in hrefs:
        assert (out / unquote(h)).exists(), h


def test_content(page):
    text = " ".join(page.text)
    for needle in ("Results per dataset", "Cross-dataset summary", "Protocol", "Environment",
                   "pt_inception-2015-12-05", "NonFiniteLoss", "missing", "Liang et al., LG-VQ",
                   "rFID from fewer than 2048 images"):
        assert needle in text, needle
    strong = page.tags.get("strong", [])
    assert strong  # best values are bold


def test_report_subcommand(tmp_path):
    write_fixture(tmp_path, images=False)
    target = tmp_path / "elsewhere" / "r.html"
    assert cli.main(["report", "--out", str(tmp_path), "--datasets", "photos", "--path", str(target)]) == 0
    p = Page()
    p.feed(target.read_text())
    # links are relative to the page, wherever it is written
    for a in p.tags["a"]:
        if a["href"].startswith("../"):
            assert (target.parent / unquote(a["href"])).exists(), a["href"]


@pytest.mark.browser
def test_page_in_headless_chromium(out, page_path, page):
    try:  # a failure, not a skip: this test runs only when asked for with -m browser
        from selenium import webdriver
    except ImportError:
        pytest.fail("needs selenium (requirements/test.txt)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    assert chromium and driver_path, "needs Debian's chromium and chromium-driver (apt-get install chromium-driver)"
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,2000"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    try:
        driver.get(page_path.resolve().as_uri())
        assert driver.title == "vqbench results"
        severe = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert severe == []
        tabs = driver.find_elements(By.CSS_SELECTOR, "table")
        assert len(tabs) == len(page.tags["table"])
        for t in tabs:
            driver.execute_script("arguments[0].scrollIntoView()", t)
            assert t.is_displayed() and t.size["height"] > 0 and t.size["width"] > 0
        imgs = driver.find_elements(By.TAG_NAME, "img")
        assert len(imgs) == len(page.tags["img"]) == FIGURES
        for img in imgs:
            driver.execute_script("arguments[0].scrollIntoView()", img)
            assert img.is_displayed()
            assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
        rd = driver.find_element(By.ID, "fig-rate_distortion_photos")
        driver.execute_script("arguments[0].scrollIntoView()", rd)
        rd_img = rd.find_element(By.TAG_NAME, "img")
        assert rd_img.is_displayed() and rd_img.size["width"] > 300 and rd_img.size["height"] > 100
        assert driver.execute_script("return arguments[0].naturalWidth", rd_img) > 300
        caption = rd.find_element(By.TAG_NAME, "figcaption").text
        assert caption.startswith("rate_distortion_photos. Rate-distortion on photos: rFID, PSNR, LPIPS against "
                                  "bits per image") and "95% bootstrap interval" in caption
        assert rd_img.get_attribute("alt") in caption
        # nothing was fetched from anywhere: figures are data URIs, the style is inline
        assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0
        assert driver.get_log("browser") == []
    finally:
        driver.quit()


def _write_priors(out, recs):
    """A finished prior (with a sample grid) on two of the fixture's photos runs, a skipped one on the failed run."""
    from PIL import Image

    from bench.generation import folder
    from bench.generation.record import PriorRecord

    written = []
    for rec in recs:
        c = rec["config"]
        if c["dataset"] != "photos" or c["codebook_size"] != 16:
            continue
        tokenizer = {"run_id": rec["run_id"], **{k: c[k] for k in ("method", "dataset", "codebook_size", "seed",
                                                                    "preset")}}
        status = "finished" if rec["status"] == "finished" else "skipped"
        prior = PriorRecord(f"{rec['run_id']}--cpu-tiny-s0-abc", status, tokenizer, {"preset": "cpu-tiny", "seed": 0})
        if status == "finished":
            prior.layout = {"sequence_length": 64}
            prior.metrics.update(gfid=40.0 + c["seed"], gkid=0.01, precision=0.5, recall=0.2, val_nll=3.0)
            prior.protocol = {"fid": {"generated": 1000}}
            prior.write(out)
            grid = np.random.default_rng(c["seed"]).integers(0, 255, size=(16, 32, 3), dtype=np.uint8)
            Image.fromarray(grid).save(folder.prior_dir(out, prior.prior_id) / folder.GRID)
        else:
            prior.error = f"tokenizer run {rec['run_id']} is 'failed', not finished"
            prior.write(out)
        written.append(prior)
    return written


def test_generation_section_with_table_and_sample_grids(tmp_path):
    recs = write_fixture(tmp_path, images=False)
    priors = _write_priors(tmp_path, recs)
    finished = [p for p in priors if p.status == "finished"]
    assert len(finished) == 3 and len(priors) == 4  # vqgan seeds 0 and 1, vqct; lfq's run failed
    page_path = report.write_report(tmp_path, datasets=["photos"])
    text = page_path.read_text(encoding="utf-8")
    p = Page()
    p.feed(text)
    assert any(s.get("id") == "generation" for s in p.tags["section"])
    assert "<a href=\"#generation\">Generation</a>" in text  # in the navigation
    captions = " ".join(p.text)
    assert "Generation on photos" in captions and "gFID" in captions and "n=1000" in captions
    assert "skipped: prior photos-lfq-k16-s0" in captions  # the failed tokenizer's prior is counted and listed
    grids = [f for f in p.tags["figure"] if f.get("id", "").startswith("samples-")]
    assert {f["id"] for f in grids} == {f"samples-{q.prior_id}" for q in finished}
    imgs = [i for i in p.tags["img"] if i["alt"].startswith("generated samples")]
    assert len(imgs) == 3 and all(i["src"].startswith("data:image/png;base64,") for i in imgs)
    links = [a["href"] for a in p.tags["a"] if a["href"].startswith("priors/")]
    assert len(links) == 6
    for h in links:
        assert (tmp_path / unquote(h)).exists(), h
    # the section follows the figures and comes before the runs
    assert text.index("id=\"figures\"") < text.index("id=\"generation\"") < text.index("id=\"runs\"")


def test_no_generation_section_without_priors(page):
    assert not any(s.get("id") == "generation" for s in page.tags["section"])
