"""A small hand-made caption corpus whose adjectives, nouns, counts and edges are known exactly."""
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
