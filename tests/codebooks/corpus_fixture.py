"""A small hand-made caption corpus whose adjectives, nouns, counts and edges are known exactly, as one
text file or spread over the three corpora of the paper's prior (CUB and Flowers text_c10 folders, a COCO
captions JSON)."""
import json
from pathlib import Path

# (caption, repetitions). Tags checked by hand: every adjective is JJ, every noun NN/NNS.
LINES = [
    ("A red car is parked on the street.", 12),  # red; car, street; red-car
    ("The old man wears a black hat.", 11),  # old, black; man, hat; old-man, black-hat
    ("Two small dogs play with a big ball.", 13),  # small, big; dog (from dogs), ball; small-dog, big-ball
    ("The tall tree has green apples.", 3),  # below the threshold of 10
]

# Seen more than 10 times, most frequent first, ties alphabetical.
ADJECTIVES = [("big", 13), ("small", 13), ("red", 12), ("black", 11), ("old", 11)]
NOUNS = [("ball", 13), ("dog", 13), ("car", 12), ("street", 12), ("hat", 11), ("man", 11)]
EDGES = [("big", "ball", 13), ("small", "dog", 13), ("red", "car", 12), ("black", "hat", 11), ("old", "man", 11)]


def captions() -> list[str]:
    return [text for text, n in LINES for _ in range(n)]


def write(folder: Path) -> Path:
    path = folder / "captions.txt"
    path.write_text("\n".join(captions()) + "\n")
    return path


def write_union_tree(root: Path) -> str:
    """The same captions as `write`, split into a CUB text_c10 tree (the red car), an Oxford Flowers
    text_c10 tree (the old man; with the .h5 files that tree also holds) and a COCO captions JSON (the
    dogs and the tree). Returns the union spec of the paper's prior over them."""
    (red, n_red), (old, n_old), (dogs, n_dogs), (tree, n_tree) = LINES
    cub = root / "cub" / "text_c10"
    for cls, image, n in (("001.Black_footed_Albatross", "Black_Footed_Albatross_0001_796111", 7),
                          ("002.Laysan_Albatross", "Laysan_Albatross_0002_1027", n_red - 7)):
        (cub / cls).mkdir(parents=True)
        (cub / cls / f"{image}.txt").write_text((red + "\n") * n)
    flowers = root / "flowers" / "text_c10"
    for cls, image, n in (("class_00001", "image_06734", 5), ("class_00002", "image_05087", n_old - 5)):
        (flowers / cls).mkdir(parents=True)
        (flowers / cls / f"{image}.txt").write_text((old + "\n") * n)
        (flowers / cls / f"{image}.h5").write_bytes(b"\x89HDF")
    coco = root / "coco" / "annotations" / "captions_train2014.json"
    coco.parent.mkdir(parents=True)
    anns = [{"image_id": i, "id": i, "caption": c} for i, c in enumerate([dogs] * n_dogs + [tree] * n_tree)]
    coco.write_text(json.dumps({"info": {}, "images": [], "annotations": anns}))
    return f"union:folder:{cub},folder:{flowers},coco:{coco}"
