"""`python -m bench.speed.loader`: the JPEG folder it writes, the trainer's loader it reads (the same
batches from the files and from the decoded cache), its rows, and its one-line errors. Run at the
`smoke` preset (16 px, batch 8) so that the training steps take milliseconds."""
import pytest
import torch
from PIL import Image

from bench.speed import loader as L

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return L.write_images(tmp_path_factory.mktemp("jpegs") / "images", 12, (40, 30))


def test_images_are_written_at_the_size_and_format_asked(folder, tmp_path):
    train = sorted((folder / "train").glob("*.jpg"))
    assert len(train) == 12 and len(list((folder / "val").glob("*.jpg"))) == 1
    with Image.open(train[0]) as img:
        assert img.format == "JPEG" and img.size == (40, 30)
    png = L.write_images(tmp_path / "png", 3, (20, 24), "png")
    with Image.open(sorted((png / "train").glob("*.png"))[0]) as img:
        assert img.format == "PNG" and img.size == (20, 24)


def test_files_and_cache_give_the_trainers_batches(folder):
    run, files = L.train_split(L.FILES, "smoke", folder)
    _, cached = L.train_split(L.CACHED, "smoke", folder)
    assert type(cached).__name__ == "CachedImages" and str(folder.parent) in str(cached.folder)
    a = list(L.make_loader(files, run, 0, 3, CPU))
    b = list(L.make_loader(cached, run, 2, 3, CPU))
    assert len(a) == 3 and a[0].shape == (run.train.batch_size, 3, 16, 16) and a[0].dtype == torch.uint8
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_quick_rows_cover_every_source_and_worker_count(folder, monkeypatch):
    monkeypatch.setattr(L, "QUICK", L.Settings(presets=("smoke",), workers=(0, 2), images=12, size=(40, 30),
                                               format="jpeg", batches=1, min_read_s=0.0, reps=1, loop_steps=1))
    rows = L.preset_rows("smoke", folder, L.QUICK, CPU)
    assert [(r["source"], r["workers"]) for r in rows] == [(s, w) for s in L.SOURCES for w in (0, 2)]
    for r in rows:
        assert r["loader images/s"] > 0 and r["step images/s"] > 0 and r["loop images/s"] > 0
        assert r["loader / step"] == pytest.approx(r["loader images/s"] / r["step images/s"])
        assert r["pin_memory"] is False and r["batch"] == 8
    assert "cache built" in rows[-1]["note"]


def test_main_prints_the_table(monkeypatch, capsys):
    monkeypatch.setattr(L, "QUICK", L.Settings(presets=("smoke",), workers=(0,), images=10, size=(40, 30),
                                               format="jpeg", batches=1, min_read_s=0.0, reps=1, loop_steps=1))
    assert L.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "loader / step" in out and all(s in out for s in L.SOURCES)


@pytest.mark.parametrize("argv,word", [(["--workers", "0,-1"], "--workers"), (["--workers", "two"], "--workers"),
                                       (["--images", "0"], "--images"), (["--presets", "gpuu"], "gpu"),
                                       (["--size", "500by375"], "--size"), (["--size", "0x10"], "--size")])
def test_bad_input_is_one_line_and_exit_2(argv, word, capsys):
    try:  # an argument type's error exits from the parser, a bad combination returns from main
        code = L.main(argv)
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err
    assert word in err and err.count("\n") == 1
