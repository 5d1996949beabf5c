"""The quantizer interface every method implements, and the nearest-code search they share."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn


@dataclass
class QuantOut:
    z_q: Tensor  # (B, C, H, W), straight-through gradient to z
    indices: Tensor  # int64 (B, H, W), or (B, H, W, L) for several codes per position
    loss: Tensor  # scalar, already weighted
    logs: dict[str, Tensor] = field(default_factory=dict)  # unweighted terms, for the train log


class Quantizer(nn.Module):
    """Base class. Subclasses set `codebook_size` and `latent_channels` in `__init__`.

    `code_groups` names index ranges [start, stop) of the global index space that are reported
    separately in code-usage statistics (VQCT: adjective and noun codebooks). Empty for one codebook.
    """

    codebook_size: int
    latent_channels: int
    code_groups: dict[str, tuple[int, int]] = {}

    @classmethod
    def prepare(cls, codebook_size: int, dim: int, options: object) -> None:
        """Build whatever this method caches on disk (VQCT: its language-model prior) before runs start,
        once per machine, so that parallel runs never race to build it. Default: nothing to do."""

    def forward(self, z: Tensor) -> QuantOut:  # pragma: no cover - interface
        raise NotImplementedError

    def decode_indices(self, indices: Tensor) -> Tensor:  # pragma: no cover - interface
        """Return exactly the `z_q` that `forward` gives in eval mode for these indices, (B, C, H, W)."""
        raise NotImplementedError


def flatten_latent(z: Tensor) -> Tensor:
    """(B, C, H, W) -> (B*H*W, C), the row layout every code search works on."""
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])


def unflatten_latent(rows: Tensor, like: Tensor) -> Tensor:
    """Inverse of `flatten_latent` for rows of any channel count, shaped after `like` (B, _, H, W)."""
    b, _, h, w = like.shape
    return rows.reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous()


# Rows per chunk of the distance matrix. 8192 x 65536 float32 is 2 GiB at worst; typical K is far
# smaller. Chunking keeps memory bounded however large B*H*W and K grow.
_SEARCH_CHUNK_ELEMENTS = 1 << 27


@torch.no_grad()
def nearest_codes(x: Tensor, codebook: Tensor, k: int = 1) -> Tensor:
    """Indices (N, k) of the k codes nearest in L2 to each row of x (N, D), codebook (K, D).

    argmin ||x - e||^2 = argmin (||e||^2 - 2 x.e): ||x||^2 is constant per row, so it is skipped.
    Rows are processed in chunks so that the (chunk, K) distance block stays bounded in memory; the
    block is one buffer reused across chunks (a fresh 512 MB block per chunk costs page faults).
    """
    x = x.float()
    codebook = codebook.float()
    e_sq = codebook.pow(2).sum(1)
    n = x.shape[0]
    rows = min(n, max(1, _SEARCH_CHUNK_ELEMENTS // max(1, codebook.shape[0])))
    out = torch.empty(n, k, dtype=torch.long, device=x.device)
    block = torch.empty(rows, codebook.shape[0], dtype=torch.float32, device=x.device)
    for start in range(0, n, rows):
        chunk = x[start : start + rows]
        dist = block[: len(chunk)]
        torch.addmm(e_sq, chunk, codebook.t(), beta=1.0, alpha=-2.0, out=dist)
        if k == 1:
            torch.argmin(dist, dim=1, out=out[start : start + rows, 0])
        else:
            out[start : start + rows] = dist.topk(k, dim=1, largest=False).indices
    return out
