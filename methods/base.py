"""The quantizer interface every method implements, and the nearest-code search they share."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
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

    # Capabilities the harness reads instead of knowing methods by name:
    # the quantizer's memory does not grow with N x K (its code search is blocked), so the speed
    # benchmark may run it at the 65,536 x 65,536 stress shape. False for methods that hold an
    # (N, K) matrix by design (logits, probabilities, similarities).
    bounded_memory: bool = False

    @classmethod
    def check(cls, codebook_size: int, dim: int, options: object) -> None:
        """Raise a UserError for a combination of K, dim and options this method cannot build (a K
        that is not a power of two for LFQ, a K beyond a vocabulary, ...). Called by the registry for
        every run before any run starts, and by `__init__`. Default: every combination is valid."""

    @classmethod
    def full_codebook_size(cls, dim: int, options: object) -> int | None:
        """K for "the whole vocabulary" (`--codebook-sizes full`) where a method's codes come from a fixed
        vocabulary (VQCT: every adjective and noun of its prior); None for methods without one, for
        which `full` means nothing."""
        return None

    @classmethod
    def fixed_codebook_size(cls, options: object) -> int | None:
        """K where the codebook is fixed by construction rather than chosen (leech: the 196,560 Leech-lattice
        vectors), else None. Such a method defines its own latent channels, so K cannot depend on dim. A run of such a method is refused any other K before it starts
        (bench.runs.config.resolve), the default grid gives it this K instead of the preset's sizes, and
        `--bits-per-image` takes it or refuses the budget. Default: K is a choice."""
        return None

    @classmethod
    def parameter_count(cls, codebook_size: int, dim: int, options: object) -> int:
        """How many parameters training would hold for this configuration, for the memory check
        before any run starts. Default: one learned (K, dim) codebook."""
        return int(codebook_size) * int(dim)

    @classmethod
    def prepare(cls, codebook_size: int, dim: int, options: object) -> None:
        """Build whatever this method caches on disk (VQCT: its language-model prior) before runs start,
        once per machine, so that parallel runs never race to build it. Default: nothing to do."""

    def index_level_sizes(self) -> tuple[int, ...]:
        """How many codes each index of one position is drawn from, one entry per index level (the
        last axis of `indices`; one entry for (B, H, W) indices), in that axis's order. The bit budget
        of a position is the sum of their log2 (`bits_per_image`), so a method emitting several
        indices per position (VQCT, RVQ, product codes) is compared with single-index ones by what
        its codes can say, not by K. Default: one index into the whole codebook."""
        return (int(self.codebook_size),)

    def bits_per_image(self, height: int, width: int) -> float:
        """The bit budget of one image whose latent grid is height x width: positions x the sum over
        index levels of log2 of each level's codebook size. Methods whose indices are not one set per
        position (a multi-scale pyramid) override it with what their codes say."""
        return height * width * sum(math.log2(size) for size in self.index_level_sizes())

    @classmethod
    def budget_bits(cls, codebook_size: int, dim: int, options: object, side: int) -> float:
        """Bits per image at K for a side x side latent, known before anything is built: what
        `--bits-per-image` compares with its budget. The rule: the method's options (levels, groups,
        top_k, ...) stay as given and only K varies. Must agree with `bits_per_image` of the built
        quantizer. Default: one index of K per position."""
        return side * side * math.log2(codebook_size)

    def code_labels(self) -> dict | None:
        """Names of the codes, where codes have names (VQCT: words), as {"groups": code_groups,
        "words": [one per index]}, for the figures; None when codes are just vectors."""
        return None

    def forward(self, z: Tensor) -> QuantOut:  # pragma: no cover - interface
        raise NotImplementedError

    def decode_indices(self, indices: Tensor) -> Tensor:  # pragma: no cover - interface
        """Return exactly the `z_q` that `forward` gives in eval mode for these indices, (B, C, H, W)."""
        raise NotImplementedError

    def learning_rate_groups(self) -> tuple[LearningRateGroup, ...]:
        """Parameters of this quantizer that train at the run's learning rate times a schedule of the
        method's own (VQBridge: its warm-up, hold and linear annealing), each group its own optimizer
        parameter group; every other parameter of the model keeps the run's learning rate. Groups are
        disjoint. Default: none, so the generator's optimizer is built exactly as for every method."""
        return ()


def flatten_latent(z: Tensor) -> Tensor:
    """(B, C, H, W) -> (B*H*W, C), the row layout every code search works on."""
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])


def unflatten_latent(rows: Tensor, like: Tensor) -> Tensor:
    """Inverse of `flatten_latent` for rows of any channel count, shaped after `like` (B, _, H, W)."""
    b, _, h, w = like.shape
    return rows.reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous()


def straight_through(z: Tensor, q: Tensor) -> Tensor:
    """VQ-VAE's straight-through estimator: the value of `q` exactly, the gradient passed to `z` as if
    quantisation were the identity; `q` gets none by this path (its gradient comes from the loss).
    One copy instead of the two passes of `z + (q - z).detach()`, whose value is q only up to rounding."""
    return _StraightThrough.apply(z, q) if z.requires_grad else q.detach()


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, q: Tensor) -> Tensor:  # noqa: ARG004 - z is here for its gradient
        return q.clone()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


def codebook_commitment_loss(q: Tensor, z: Tensor, beta: float, legacy: bool = False) -> tuple[Tensor, dict[str, Tensor]]:
    """VQ-VAE's ||sg[z] - e||^2 + beta ||z - sg[e]||^2 (the codebook term moves the codes, the commitment
    term the encoder); `legacy`: beta on the codebook term instead, as the original VQGAN code.
    Returns the weighted loss and the unweighted terms for the train log."""
    codebook = F.mse_loss(q, z.detach())
    commitment = F.mse_loss(z, q.detach())
    loss = beta * codebook + commitment if legacy else codebook + beta * commitment
    return loss, {"codebook": codebook.detach(), "commitment": commitment.detach()}


# Rows of one distance block. On the CPU the block is sized to stay in a core's L2 cache, so the
# reduction reads what the matrix product has just written instead of a block that went to memory
# (measured in bench.speed: 1.5-1.6x the bare product at 256-d codes against 2.1-2.4x for one big
# block); at least 128 rows keep the product itself efficient when K is large. On a GPU one big block
# is fastest (fewer launches). Either way the block is capped, so memory stays bounded however large
# B*H*W and K grow: 65,536 x 65,536 takes 128 rows x 65,536 codes = 32 MiB on the CPU.
_CPU_BLOCK_ELEMENTS = 1 << 21
_CPU_MIN_ROWS, _CPU_MAX_ROWS = 128, 2048
_MAX_BLOCK_ELEMENTS = 1 << 27  # 512 MiB of float32: the cap on any device
# Up to this many neighbours, k passes of max() beat topk (which sorts on the CPU).
_REPEATED_MAX_K = 4
# On the CPU, a nearest-code search (k = 1) over more than 8 tiles' worth of codes splits the codes into
# column tiles (see _best_over_tiles), so that a block keeps ~1024 rows: at K = 65,536 a cache-sized
# block would hold only 128 rows, and the product runs slower at that height (2,048 x 65,536 at
# D = 256: 2.0x the bare product untiled, 1.6x tiled). With fewer tiles, scoring each row's best tile
# a second time costs more than it saves (K = 8192: 1.44x untiled, 1.81x tiled).
_CPU_CODE_TILE = 2048
_CPU_TILED_ABOVE = 8


def padded_codes(num_codes: int) -> int:
    """Columns of the score block: K rounded up to a multiple of 64 (or of 16 where 64 would add more
    than 5%). BLAS runs much faster on such widths (measured on the CPU: 2048 x 257 @ 257 x K takes
    3.0 ms at K = 739 and 2.35 ms at K = 768); the extra columns score -inf and never win."""
    if num_codes <= 16:
        return num_codes
    by64 = -(-num_codes // 64) * 64
    return by64 if by64 <= 1.05 * num_codes else -(-num_codes // 16) * 16


def search_block_rows(n: int, num_codes: int, device: torch.device) -> int:
    """Rows of x per distance block for a search of n rows against num_codes codes."""
    cap = max(1, _MAX_BLOCK_ELEMENTS // num_codes)
    if device.type == "cpu":
        rows = min(max(_CPU_BLOCK_ELEMENTS // num_codes, _CPU_MIN_ROWS), _CPU_MAX_ROWS)
    else:
        rows = cap
    return max(1, min(n, rows, cap))


@torch.no_grad()
def nearest_codes(x: Tensor, codebook: Tensor, k: int = 1) -> Tensor:
    """Indices (N, k) of the k codes nearest in L2 to each row of x (N, D), codebook (K, D), nearest first.

    argmin ||x - e||^2 = argmax (2 x.e - ||e||^2): ||x||^2 is constant per row, so it is skipped. The
    score is one plain product of [x, 1] with [2e, -||e||^2]: adding ||e||^2 as a bias (addmm) first
    copies it into every row of the block, which cost up to 1.7x the product itself at small D. It
    is maximised because max() returning values and indices is ~2.5x faster than argmin() on the
    CPU; equal codes give equal scores and the first index wins, as with argmin. Rows go through one
    reused (rows, K) block (a fresh block per chunk costs page faults).
    """
    x = x.float()
    codebook = codebook.float()
    (n, dim), num_codes = x.shape, padded_codes(codebook.shape[0])
    scored_codes = torch.zeros(dim + 1, num_codes, dtype=torch.float32, device=x.device)
    scored_codes[:dim, : len(codebook)] = codebook.t() * 2.0
    scored_codes[dim, : len(codebook)] = -codebook.pow(2).sum(1)
    scored_codes[dim, len(codebook) :] = float("-inf")
    tiled = k == 1 and x.device.type == "cpu" and num_codes > _CPU_TILED_ABOVE * _CPU_CODE_TILE
    width = _CPU_CODE_TILE if tiled else num_codes
    rows = search_block_rows(n, width, x.device)
    out = torch.empty(k, n, dtype=torch.long, device=x.device)
    block = torch.empty(rows, width, dtype=torch.float32, device=x.device)
    best = torch.empty(rows, dtype=torch.float32, device=x.device)
    x_one = torch.ones(rows, dim + 1, dtype=torch.float32, device=x.device)  # [x, 1]; the ones column stays
    for start in range(0, n, rows):
        chunk = x[start : start + rows]
        m = len(chunk)
        x_one[:m, :dim] = chunk
        if tiled:
            _best_over_tiles(x_one[:m], scored_codes, block[:m], out[0, start : start + m])
            continue
        score = block[:m]
        torch.mm(x_one[:m], scored_codes, out=score)
        if k > _REPEATED_MAX_K:
            out[:, start : start + m] = score.topk(k, dim=1).indices.t()
            continue
        for j in range(k):
            torch.max(score, dim=1, out=(best[:m], out[j, start : start + m]))
            if j + 1 < k:  # take the winner out of the running for the next neighbour
                score.scatter_(1, out[j, start : start + m, None], float("-inf"))
    return out.t().contiguous()


def _best_over_tiles(x_one: Tensor, scored_codes: Tensor, block: Tensor, index: Tensor) -> None:
    """Into `index`: the argmax over all codes of x_one @ scored_codes, in two phases. First every
    column tile (`block`'s width) is scored and only its maximum kept (amax is ~3x faster than max with
    indices); then the rows are grouped by their best tile and only that tile is scored again for them,
    to find the index. At small D, where one pass over the scores costs as much as the product, this
    took the 65,536 x 65,536 search at D = 32 from 2.4 s to 1.6 s (same indices); at D = 256 it is even.
    The first tile holding the maximum wins a tie, and the first index within it."""
    width, num_codes = block.shape[1], scored_codes.shape[1]
    n_tiles = -(-num_codes // width)
    tile_max = torch.empty(n_tiles, len(x_one), dtype=block.dtype, device=block.device)
    for t in range(n_tiles):
        score = block[:, : min(width, num_codes - t * width)]
        torch.mm(x_one, scored_codes[:, t * width : (t + 1) * width], out=score)
        torch.amax(score, dim=1, out=tile_max[t])
    best_tile = tile_max.argmax(0)
    order = torch.argsort(best_tile, stable=True)
    start = 0
    for t, count in enumerate(torch.bincount(best_tile, minlength=n_tiles).tolist()):
        if count:
            rows = order[start : start + count]
            start += count
            index[rows] = (x_one[rows] @ scored_codes[:, t * width : (t + 1) * width]).argmax(1) + t * width


@dataclass(frozen=True)
class LearningRateGroup:
    """One parameter group of `Quantizer.learning_rate_groups`: at optimizer step `step` (0-based) of a
    run of `total_steps`, its learning rate is the run's times `factor(step, total_steps)`. The factor
    is a pure function of the step, so a resumed run sets the rate an uninterrupted one had."""

    name: str  # the train log's `lr_<name>` column
    parameters: tuple[nn.Parameter, ...]
    factor: Callable[[int, int], float]
