"""The official VQCT word prior, `codebook_priors/big_nlp_word_knowledge_clip.pkl`, read safely and
turned into the codebook graph exactly as the official quantizer builds it.

The official checkpoints do not hold the prior: `vqct_VectorQuantizer3` keeps the CLIP word vectors
and the graph as plain attributes, rebuilt from this pickle on every construction. The pickle is a
plain `pickle.dump` of a dict: word lists, word -> count dicts, (adjective, noun) pairs, and word ->
CLIP text feature (torch tensors, 512-d). It is read by an unpickler that knows five names: the tensor
rebuild function, a storage (read back with torch.load(weights_only=True)), OrderedDict, and numpy's
array rebuild; any other name is refused, so nothing in the file runs.

The graph is the official one, defects included, because the released GCN weights were trained on
it: words with count > 10 in dict order, adjectives first; ONE word -> index dict over both lists, so
a word tagged both ways maps to its noun node and its adjective node has no edges; one edge entry
per (adjective, noun) occurrence plus its reverse, so torch_geometric's GCNConv weights an edge by its
count; self loops weight 1 (GCNConv's add_remaining_self_loops). vqbench's VQCT quantizer computes
that graph from unique pairs and counts (`counted_edges`; its default edge_weight="count").
"""
from __future__ import annotations

import io
import pickle
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bench.core.errors import UserError

PRIOR_FILE = "big_nlp_word_knowledge_clip.pkl"
MIN_COUNT = 10  # the official filter: count > 10


def _storage_from_bytes(data: bytes) -> Any:
    # torch.storage._load_from_bytes, but with the weights-only unpickler (the bytes are a torch.save file)
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _numpy_array(*args: Any) -> Any:
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct(*args)


class _PriorUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        allowed = {
            ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
            ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
            ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
            ("collections", "OrderedDict"): OrderedDict,
        }
        if (module, name) in allowed:
            return allowed[(module, name)]
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            return _numpy_array
        if module == "numpy" and name in ("ndarray", "dtype"):
            import numpy as np

            return getattr(np, name)
        raise pickle.UnpicklingError(f"{module}.{name}")


@dataclass
class OfficialPrior:
    words: list[str]  # code index -> word: adjectives, then nouns
    n_adj: int
    vectors: Tensor  # (K, D) float32 language-model vectors, row order as `words`
    edge_entries: Tensor  # (2, 2E) int64, every occurrence and its reverse, as the official code feeds GCNConv


def find_prior(given: Path | None, near: list[Path]) -> Path:
    """`given`, or PRIOR_FILE in the folder of a file in `near` (checkpoint, config) or one of its
    four nearest ancestors, or in a codebook_priors/ folder there: the official repository keeps it in
    codebook_priors/ at its root and its runs in logs/<run>/checkpoints/, three folders below."""
    if given is not None:
        return given
    for p in near:
        for folder in list(Path(p).parents)[:5]:
            for candidate in (folder / PRIOR_FILE, folder / "codebook_priors" / PRIOR_FILE):
                if candidate.is_file():
                    return candidate
    raise UserError(f"a vqct checkpoint needs the official word prior {PRIOR_FILE} (from the VQCT repository's "
                    f"codebook_priors/; the checkpoint does not hold it); none beside the checkpoint or config: "
                    f"give it with prior_path / --prior PATH")


def read_prior(path: Path) -> OfficialPrior:
    """Read the prior pickle (module docstring) and build the official codebook graph."""
    try:
        with Path(path).open("rb") as f:
            data = _PriorUnpickler(f).load()
    except pickle.UnpicklingError as exc:
        raise UserError(f"refused prior {path}: reading it would build the Python object {exc}; the VQCT prior is "
                        f"read as tensors and plain containers only, because building other objects can run "
                        f"arbitrary code") from None
    except (EOFError, OSError, ValueError, TypeError, RuntimeError, AttributeError, IndexError) as exc:
        raise UserError(f"prior {path} cannot be read: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    return official_graph(data, path)


def official_graph(data: Any, path: Path) -> OfficialPrior:
    for key in ("adj_code_book_num", "noun_code_book_num", "adj_noun_edges", "adj_code_book_vec", "noun_code_book_vec"):
        if not isinstance(data, dict) or key not in data:
            raise UserError(f"prior {path}: missing key {key!r} (not the official VQCT prior file)")
    adjectives = [w for w, c in data["adj_code_book_num"].items() if c > MIN_COUNT]
    nouns = [w for w, c in data["noun_code_book_num"].items() if c > MIN_COUNT]
    words = adjectives + nouns
    index = {w: i for i, w in enumerate(words)}  # later (noun) entries win, as in the official code
    pairs = [(index[a], index[n]) for a, n in data["adj_noun_edges"] if a in index and n in index]
    e = torch.tensor(pairs, dtype=torch.long).t() if pairs else torch.zeros(2, 0, dtype=torch.long)
    vectors = []
    for group, table in ((adjectives, data["adj_code_book_vec"]), (nouns, data["noun_code_book_vec"])):
        for w in group:
            if w not in table:
                # the official code would skip it and misalign every later code with its graph node
                raise UserError(f"prior {path}: word {w!r} has a count above {MIN_COUNT} but no vector")
            vectors.append(torch.as_tensor(table[w]).reshape(-1).float())
    if not vectors:
        raise UserError(f"prior {path}: no word has a count above {MIN_COUNT}")
    return OfficialPrior(words, len(adjectives), torch.stack(vectors), torch.cat([e, e.flip(0)], dim=1))


def counted_edges(entries: Tensor) -> tuple[Tensor, Tensor]:
    """The official edge list (one entry per occurrence, and its reverse) as vqbench's VQCT holds a
    graph: each (i, j) pair once with its count as the weight, self loops dropped. GCNConv over the
    list and vqct's normalized_adjacency over these give the same matrix: GCNConv sums repeated
    entries and puts weight 1 on every self loop, whatever entries the list had for it."""
    off = entries[0] != entries[1]
    pairs, counts = torch.unique(entries[:, off], dim=1, return_counts=True)
    return pairs, counts.float()
