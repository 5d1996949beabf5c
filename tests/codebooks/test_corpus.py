"""Corpus readers: plain text, COCO caption JSON, CUB/Flowers caption folders, the CuPL default."""
import json

import pytest

from bench.core.errors import UserError
from codebooks.corpus import load_corpus


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
