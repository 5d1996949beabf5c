"""The two folders the vqct-official preset reads, as a user would have them: the official caption corpus
(the hand-made captions of tests/codebooks/corpus_fixture.py in the CUB, Flowers and COCO layout) and a
tiny random CLIP text encoder saved by transformers in place of ViT-B/32's."""
from dataclasses import dataclass
from pathlib import Path

from tests.codebooks import corpus_fixture
from tests.codebooks.tiny_clip import save_tiny_clip

VOCABULARY = len(corpus_fixture.ADJECTIVES) + len(corpus_fixture.NOUNS)  # 5 + 6 = 11 words seen > 10 times


@dataclass(frozen=True)
class OfficialFolders:
    captions: Path
    clip: Path

    @property
    def corpus(self) -> str:
        """The union spec the preset must build from `captions` (official order: CUB, Flowers, COCO)."""
        c = self.captions.resolve()
        return (f"union:folder:{c / 'cub' / 'text_c10'},folder:{c / 'flowers' / 'text_c10'},"
                f"coco:{c / 'coco' / 'annotations' / 'captions_train2014.json'}")


def write_official_folders(root: Path) -> OfficialFolders:
    captions = root / "vqct-captions"
    corpus_fixture.write_union_tree(captions)
    save_tiny_clip(root / "clip-b32-text")
    return OfficialFolders(captions, root / "clip-b32-text")
