"""How a tokenizer's index grid becomes the prior's sequence, and back.

Layout: raster order over the latent grid (row by row, left to right), and the L indices of one
position consecutively in the order the quantizer emits them (VQCT: its top_k adjectives nearest
first, then the noun; a residual method: level 1, 2, ...). Token t of the sequence is index
[h, w, l] with t = (h * W + w) * L + l, which is exactly torch's row-major flattening of the
(H, W, L) grid, so `from_sequence(to_sequence(x)) == x` and every sampled sequence of the right
length reshapes to the tokenizer's own index shape and decodes through `decode_indices`.

The vocabulary is the tokenizer's `codebook_size` at every position: methods that factorise their
codes (FSQ's levels, LFQ's bits) already emit one flat index in [0, K). The prior models the joint
distribution of all H * W * L tokens; nothing in it knows what an index means.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import Tensor

ORDER = "raster over positions (row-major), the L indices of a position consecutively"


@dataclass(frozen=True)
class TokenLayout:
    index_shape: tuple[int, ...]  # one image's indices: (H, W) or (H, W, L), as the quantizer emits them
    vocab_size: int  # the tokenizer's codebook_size

    @classmethod
    def of(cls, indices: Tensor, vocab_size: int) -> TokenLayout:
        """The layout of a batch of indices, (B, H, W) or (B, H, W, L)."""
        if indices.ndim not in (3, 4):
            raise ValueError(f"indices must be (B, H, W) or (B, H, W, L), got {tuple(indices.shape)}")
        return cls(tuple(int(s) for s in indices.shape[1:]), int(vocab_size))

    @property
    def height(self) -> int:
        return self.index_shape[0]

    @property
    def width(self) -> int:
        return self.index_shape[1]

    @property
    def per_position(self) -> int:
        """L: indices per latent position (1 for (B, H, W) methods)."""
        return self.index_shape[2] if len(self.index_shape) == 3 else 1

    @property
    def length(self) -> int:
        """Tokens per image: H * W * L."""
        return math.prod(self.index_shape)

    def to_sequence(self, indices: Tensor) -> Tensor:
        """(B, *index_shape) int64 -> (B, length), in the order of the module docstring."""
        if tuple(indices.shape[1:]) != self.index_shape:
            raise ValueError(f"indices of shape {tuple(indices.shape)} do not have this layout's {self.index_shape}")
        return indices.reshape(indices.shape[0], self.length)

    def from_sequence(self, tokens: Tensor) -> Tensor:
        """(B, length) -> (B, *index_shape) int64, what the tokenizer's `decode_indices` takes."""
        if tokens.ndim != 2 or tokens.shape[1] != self.length:
            raise ValueError(f"sequences of shape {tuple(tokens.shape)} do not have length {self.length}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.vocab_size):
            raise ValueError(f"tokens outside the vocabulary [0, {self.vocab_size})")
        return tokens.long().reshape(tokens.shape[0], *self.index_shape)

    def position(self, t: int) -> tuple[int, ...]:
        """(h, w) or (h, w, l) of sequence token t."""
        h, rest = divmod(t, self.width * self.per_position)
        w, l = divmod(rest, self.per_position)
        return (h, w, l) if len(self.index_shape) == 3 else (h, w)

    def describe(self) -> dict[str, Any]:
        return {"index_shape": list(self.index_shape), "sequence_length": self.length, "vocab_size": self.vocab_size,
                "positions": self.height * self.width, "indices_per_position": self.per_position, "order": ORDER}
