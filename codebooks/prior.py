"""A saved codebook prior: adjective and noun words with counts, their language-model vectors, the
adjective-noun edges with counts, and metadata. One folder, plain files:

    adjectives.tsv     word<TAB>count, most frequent first     (row i = adjective code i)
    nouns.tsv          word<TAB>count, most frequent first     (row j = noun code j)
    edges.tsv          adjective<TAB>noun<TAB>count, most frequent first
    vectors.safetensors  "adjectives" (A, D) and "nouns" (N, D), float32, rows in the order above
    metadata.json      corpus and its hash, tagger, lemmatiser, language model, templates, rules, versions
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bench.core.atomic import atomic_folder

from .pos import Vocabulary, split_sizes

FILES = ("adjectives.tsv", "nouns.tsv", "edges.tsv", "vectors.safetensors", "metadata.json")


@dataclass
class Prior:
    adjectives: list[str]
    adj_counts: list[int]
    nouns: list[str]
    noun_counts: list[int]
    adj_vectors: Tensor  # (A, D) float32
    noun_vectors: Tensor  # (N, D) float32
    edges: list[tuple[int, int, int]]  # (adjective index, noun index, count)
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @classmethod
    def from_vocabulary(cls, vocab: Vocabulary, adj_vectors: Tensor, noun_vectors: Tensor,
                        metadata: dict[str, Any]) -> "Prior":
        return cls(vocab.adjectives, vocab.adj_counts, vocab.nouns, vocab.noun_counts, adj_vectors.float().contiguous(),
                   noun_vectors.float().contiguous(), list(vocab.edges), metadata)

    @property
    def n_adj(self) -> int:
        return len(self.adjectives)

    @property
    def n_noun(self) -> int:
        return len(self.nouns)

    @property
    def dim(self) -> int:
        return int(self.adj_vectors.shape[1])

    def split(self, codebook_size: int) -> tuple[int, int]:
        """(adjectives, nouns) for K codes: the ratio of the whole vocabulary (UserError if K is too big)."""
        return split_sizes(codebook_size, self.n_adj, self.n_noun)

    def select(self, n_adj: int, n_noun: int) -> "Prior":
        """The n_adj most frequent adjectives and n_noun most frequent nouns, and the edges among them."""
        edges = [(a, n, c) for a, n, c in self.edges if a < n_adj and n < n_noun]
        meta = {**self.metadata, "selected": {"adjectives": n_adj, "nouns": n_noun}}
        return Prior(self.adjectives[:n_adj], self.adj_counts[:n_adj], self.nouns[:n_noun], self.noun_counts[:n_noun],
                     self.adj_vectors[:n_adj], self.noun_vectors[:n_noun], edges, meta, self.path)

    def subset(self, codebook_size: int) -> "Prior":
        """The K most frequent words, split between adjectives and nouns in the vocabulary's ratio."""
        return self.select(*self.split(codebook_size))

    # -- files ---------------------------------------------------------------------------------

    def save(self, folder: Path | str) -> Path:
        """Write atomically: into a temporary sibling folder, then renamed. If another process saved
        the same prior meanwhile, its copy is kept (they are identical by construction)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        with atomic_folder(folder) as tmp:
            _write_tsv(tmp / "adjectives.tsv", zip(self.adjectives, self.adj_counts))
            _write_tsv(tmp / "nouns.tsv", zip(self.nouns, self.noun_counts))
            _write_tsv(tmp / "edges.tsv", ((self.adjectives[a], self.nouns[n], c) for a, n, c in self.edges))
            save_file({"adjectives": self.adj_vectors.contiguous(), "nouns": self.noun_vectors.contiguous()},
                      str(tmp / "vectors.safetensors"))
            (tmp / "metadata.json").write_text(json.dumps(self.metadata, indent=1, sort_keys=True) + "\n")
        self.path = folder
        return folder

    @classmethod
    def load(cls, folder: Path | str) -> "Prior":
        from safetensors.torch import load_file

        folder = Path(folder)
        missing = [f for f in FILES if not (folder / f).is_file()]
        if missing:
            from bench.core.errors import UserError

            raise UserError(f"{folder} is not a codebook prior (missing {', '.join(missing)})")
        adjs = _read_tsv(folder / "adjectives.tsv")
        nouns = _read_tsv(folder / "nouns.tsv")
        a_idx = {row[0]: i for i, row in enumerate(adjs)}
        n_idx = {row[0]: i for i, row in enumerate(nouns)}
        edges = [(a_idx[a], n_idx[n], int(c)) for a, n, c in _read_tsv(folder / "edges.tsv")]
        vectors = load_file(str(folder / "vectors.safetensors"))
        meta = json.loads((folder / "metadata.json").read_text())
        return cls([r[0] for r in adjs], [int(r[1]) for r in adjs], [r[0] for r in nouns], [int(r[1]) for r in nouns],
                   vectors["adjectives"], vectors["nouns"], edges, meta, folder)

    # -- printing ------------------------------------------------------------------------------

    def summary(self, top: int = 20, top_edges: int = 20) -> str:
        m = self.metadata
        lm = m.get("encoder", {})
        lines = [
            f"codebook prior{f' at {self.path}' if self.path else ''}",
            f"  corpus:      {m.get('corpus', {}).get('spec', '?')} ({m.get('corpus', {}).get('captions', '?')} captions)",
            *[f"    part:      {part.get('spec', '?')} ({part.get('captions', '?')} captions)"
              for part in m.get("corpus", {}).get("parts", [])],
            f"  language model: {lm.get('kind', '?')} {lm.get('model', lm.get('package', ''))}, {self.dim}-d",
            f"  templates:   noun {m.get('templates', {}).get('noun')!r}, adjective {m.get('templates', {}).get('adjective')!r}",
            f"  sizes:       {self.n_adj} adjectives + {self.n_noun} nouns = {self.n_adj + self.n_noun} codes, "
            f"{len(self.edges)} edges (distinct adjective-noun pairs), {sum(c for _, _, c in self.edges)} edge "
            f"occurrences (adjective-noun bigrams: the graph's weights)",
            f"  top {top} adjectives: " + ", ".join(f"{w} {c}" for w, c in zip(self.adjectives[:top], self.adj_counts[:top])),
            f"  top {top} nouns:      " + ", ".join(f"{w} {c}" for w, c in zip(self.nouns[:top], self.noun_counts[:top])),
            f"  top {top_edges} edges:      " + ", ".join(f"{self.adjectives[a]} {self.nouns[n]} {c}"
                                                    for a, n, c in self.edges[:top_edges]),
        ]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _write_tsv(path: Path, rows) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write("\t".join(str(x) for x in row) + "\n")


def _read_tsv(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines() if line]


def graph_tensors(prior: Prior) -> tuple[Tensor, Tensor, Tensor]:
    """Node features (A+N, D) with adjectives first, the undirected edge index (2, 2E) over them (each
    adjective-noun pair once, then its reversed copy) and each entry's bigram count (2E,), float."""
    x = torch.cat([prior.adj_vectors, prior.noun_vectors])
    if prior.edges:
        e = torch.tensor([[a, prior.n_adj + n] for a, n, _ in prior.edges], dtype=torch.long).t()
        count = torch.tensor([float(c) for _, _, c in prior.edges])
        return x, torch.cat([e, e.flip(0)], dim=1), torch.cat([count, count])
    return x, torch.zeros(2, 0, dtype=torch.long), torch.zeros(0)
