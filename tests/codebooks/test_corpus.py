"""Corpus readers: plain text, COCO caption JSON (a file or a folder), CUB/Flowers caption folders, unions
of them (the paper's prior), the CuPL default."""
import json

import pytest

from bench.core.errors import UserError
from codebooks.corpus import load_corpus

from . import corpus_fixture as fx


def test_plain_text_file_and_folder(tmp_path):
    (tmp_path / "a.txt").write_text("A red car.\n\n  A big dog.  \n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("An old man.\n")
    assert load_corpus(f"text:{tmp_path / 'a.txt'}").captions == ("A red car.", "A big dog.")
    c = load_corpus(f"text:{tmp_path}")
    assert c.captions == ("A red car.", "A big dog.", "An old man.") and c.kind == "text"


def test_coco_json(tmp_path):
    path = tmp_path / "captions_val2017.json"
    path.write_text(json.dumps({"images": [], "annotations": [{"image_id": 1, "id": 5, "caption": "A cat on a mat. "},
                                                              {"image_id": 2, "id": 6, "caption": "Two dogs."}]}))
    c = load_corpus(f"coco:{path}")
    assert c.captions == ("A cat on a mat.", "Two dogs.") and c.kind == "coco"
    assert load_corpus(str(path)).kind == "coco"  # guessed from .json
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"annotations": [{"id": 1}]}))
    with pytest.raises(UserError, match="not a COCO caption file"):
        load_corpus(f"coco:{bad}")


def test_cub_flowers_caption_folder(tmp_path):
    root = tmp_path / "text_c10"
    (root / "001.Black_footed_Albatross").mkdir(parents=True)
    (root / "002.Laysan_Albatross").mkdir()
    (root / "001.Black_footed_Albatross" / "img_1.txt").write_text("this bird has a white belly\nthe bird is brown\n")
    (root / "002.Laysan_Albatross" / "img_2.txt").write_text("a large white bird\n")
    (root / "002.Laysan_Albatross" / "img_2.h5").write_bytes(b"\x00")  # ignored
    c = load_corpus(f"folder:{root}")
    assert c.captions == ("this bird has a white belly", "the bird is brown", "a large white bird")
    assert load_corpus(str(root)).kind == "folder"
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no .txt files"):
        load_corpus(f"folder:{tmp_path / 'empty'}")


def test_cupl_default():
    c = load_corpus()
    assert c.kind == "cupl" and len(c.captions) == 149_700
    assert c.captions[0].startswith("A tench")


def test_hash_follows_content(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("x\ny\n")
    b.write_text("x\ny\n")
    assert load_corpus(f"text:{a}").sha256 == load_corpus(f"text:{b}").sha256
    b.write_text("x\nz\n")
    assert load_corpus(f"text:{a}").sha256 != load_corpus(f"text:{b}").sha256


def test_missing_path_is_one_line_user_error(tmp_path):
    with pytest.raises(UserError) as e:
        load_corpus(f"text:{tmp_path / 'nope.txt'}")
    assert "\n" not in str(e.value)


def test_coco_folder_reads_every_json_in_name_order(tmp_path):
    folder = tmp_path / "coco"
    folder.mkdir()
    (folder / "captions_val2014.json").write_text(json.dumps({"annotations": [{"caption": "A bus."}]}))
    (folder / "captions_train2014.json").write_text(json.dumps({"annotations": [{"caption": "A cat."}]}))
    (folder / "readme.txt").write_text("not captions")
    assert load_corpus(f"coco:{folder}").captions == ("A cat.", "A bus.")
    (tmp_path / "none").mkdir()
    with pytest.raises(UserError, match="no .json files"):
        load_corpus(f"coco:{tmp_path / 'none'}")


def test_union_of_the_papers_three_corpora(tmp_path):
    spec = fx.write_union_tree(tmp_path)
    c = load_corpus(spec)
    assert c.kind == "union" and [p.kind for p in c.parts] == ["folder", "folder", "coco"]
    assert sorted(c.captions) == sorted(fx.captions())  # every caption once, the .h5 files skipped
    assert c.captions == c.parts[0].captions + c.parts[1].captions + c.parts[2].captions
    assert [len(p.captions) for p in c.parts] == [12, 11, 16]
    d = c.describe()
    assert d["captions"] == 39 and [p["spec"] for p in d["parts"]] == spec.removeprefix("union:").split(",")
    # the order of the parts is part of the content hash; a reordered union is another corpus
    a, b, cc = spec.removeprefix("union:").split(",")
    assert load_corpus(f"union:{cc},{a},{b}").sha256 != c.sha256


def test_union_keeps_commas_inside_paths_and_refuses_bad_parts(tmp_path):
    odd = tmp_path / "a,b.txt"
    odd.write_text("A red car.\n")
    other = tmp_path / "c.txt"
    other.write_text("A big dog.\n")
    assert load_corpus(f"union:text:{odd},text:{other}").captions == ("A red car.", "A big dog.")
    for spec, message in ((f"union:{other}", "must name its kind"), ("union:", "at least one part"),
                          (f"union:union:text:{other}", "cannot contain another union"),
                          (f"union:text:{tmp_path / 'missing.txt'}", "does not exist")):
        with pytest.raises(UserError, match=message) as e:
            load_corpus(spec)
        assert "\n" not in str(e.value)
