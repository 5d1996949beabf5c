"""Training tricks that any nearest-neighbour quantizer can switch on, written once: k-means
initialisation of the codebook, replacement of dead codes by encoder outputs, the rotation trick,
and the EMA codebook update they build on.

- k-means initialisation (SoundStream, Zeghidour et al. 2021, https://arxiv.org/abs/2107.03312,
  Section 3.2): on the first training batch the codebook becomes the k-means centroids of that
  batch's latents, so no code starts out of reach of the data.
- Dead-code replacement (SoundStream, ibid.; Jukebox's "random restarts", Dhariwal et al. 2020,
  https://arxiv.org/abs/2005.00341): a code whose exponential moving average usage (assignments per
  step) falls below a threshold is moved onto an encoder output of the current batch.
- The rotation trick (Fifty et al., "Restructuring Vector Quantization with the Rotation Trick",
  ICLR 2025, https://arxiv.org/abs/2410.06424, Section 4.2): instead of copying the decoder's
  gradient to the encoder unchanged (straight-through), the encoder output e is mapped onto its code
  q by a rotation and rescaling treated as constant, q~ = sg[lambda R] e, so q~ has q's value while
  the gradient reaching e is rotated and scaled by the angle and the norm ratio between e and q.

Options are the field names vector-quantize-pytorch uses for the same things (`kmeans_init`,
`kmeans_iters`, `threshold_ema_dead_code`, `rotation_trick`); tests/methods/test_references.py checks
each against its `VectorQuantize`. State ("initialised yet?", usage counts) lives in registered
buffers, so a checkpoint carries it and a resumed run equals an uninterrupted one. Every reduction
and every random choice goes through methods.distributed, so data-parallel workers keep one codebook.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.core.option_ranges import AT_LEAST_ONE, NON_NEGATIVE, option

from . import distributed
from .base import flatten_latent, nearest_codes, straight_through, unflatten_latent


@dataclass
class CodebookTrickOptions:
    """The fields every nearest-neighbour method's Options inherits (all off by default)."""

    # Replace the initial codebook by k-means centroids of the first training batch's latents (all
    # workers' latents). Codes that start far from the data are never chosen and never move.
    kmeans_init: bool = False
    kmeans_iters: int = option(10, AT_LEAST_ONE)  # Lloyd iterations of that k-means (vector-quantize-pytorch's default)
    # Replace each code whose EMA usage (expected assignments per training step) falls below this
    # number by an encoder output of the current batch. 0 = off; SoundStream-style models use 2.
    threshold_ema_dead_code: float = option(0.0, NON_NEGATIVE)
    # Gradient through the quantizer by the rotation trick instead of the straight-through estimator.
    rotation_trick: bool = False


# --- estimators -----------------------------------------------------------------------------------

def rotate_to(e: Tensor, q: Tensor, eps: float = 1e-6) -> Tensor:
    """Rows (N, D): q's value, reached from e by q~ = sg[lambda R] e, with R the rotation taking the
    direction of e onto that of q (a Householder reflection through their bisector followed by one
    through q's direction, written without forming R) and lambda = |q| / |e|. Norms are clamped at
    `eps` so a zero row gives zero instead of NaN."""
    e_norm = e.norm(dim=1, keepdim=True).clamp(min=eps).detach()
    q_norm = q.norm(dim=1, keepdim=True).clamp(min=eps).detach()
    u = (e.detach() / e_norm)
    v = (q.detach() / q_norm)
    w = F.normalize(u + v, dim=1, eps=eps)
    rotated = e - 2 * (e * w).sum(1, keepdim=True) * w + 2 * (e * u).sum(1, keepdim=True) * v
    return rotated * (q_norm / e_norm)


def quantized_output(z: Tensor, q: Tensor, rotation_trick: bool, training: bool) -> Tensor:
    """z_q for latents z and their codes q (B, C, H, W): the rotation trick in training when asked for
    and a gradient is wanted, else the straight-through estimator (whose value is q exactly, which is
    what `decode_indices` reproduces in eval mode)."""
    if rotation_trick and training and z.requires_grad:
        return unflatten_latent(rotate_to(flatten_latent(z), flatten_latent(q)), z)
    return straight_through(z, q)


# --- k-means ---------------------------------------------------------------------------------------

def sample_rows(rows: Tensor, num: int) -> Tensor:
    """`num` rows drawn without replacement when there are enough, with replacement otherwise (torch's
    global generator)."""
    n = rows.shape[0]
    if n >= num:
        return rows[torch.randperm(n, device=rows.device)[:num]]
    return rows[torch.randint(0, n, (num,), device=rows.device)]


def _counts_and_sums(rows: Tensor, idx: Tensor, k: int, collective: bool = True) -> tuple[Tensor, Tensor]:
    """Assignments per code and the sum of the rows assigned to it, summed over all workers with one
    collective (`collective=False`: this process's rows only)."""
    stats = torch.zeros(k, rows.shape[1] + 1, dtype=rows.dtype, device=rows.device)
    stats[:, 0] = torch.bincount(idx, minlength=k).to(rows.dtype)
    stats[:, 1:].index_add_(0, idx, rows)
    if collective:
        distributed.all_reduce_sum_(stats)
    return stats[:, 0], stats[:, 1:]


@torch.no_grad()
def kmeans(rows: Tensor, k: int, iters: int, cosine: bool = False, collective: bool = True) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means of `rows` (N, D) of every worker into k centroids: (centroids (k, D), how many
    rows the last assignment gave each). The seeds are k rows drawn by rank 0 from all workers'
    rows; each iteration sums counts and sums over the workers, so every worker computes the same
    centroids. An empty cluster keeps its previous centroid. `cosine`: rows and centroids on the unit
    sphere (for l2-normalised codebooks). `collective=False`: this process's rows only, no
    communication (for data every worker holds whole, such as a frozen feature bank)."""
    rows = rows.float()
    if cosine:
        rows = F.normalize(rows, dim=1)
    if collective:
        means = distributed.broadcast_(sample_rows(distributed.gather_rows(rows), k).contiguous())
    else:
        means = sample_rows(rows, k)
    counts = torch.zeros(k, dtype=rows.dtype, device=rows.device)
    for _ in range(iters):
        idx = nearest_codes(rows, means)[:, 0]
        counts, sums = _counts_and_sums(rows, idx, k, collective)
        new = sums / counts.clamp(min=1).unsqueeze(1)
        if cosine:
            new = F.normalize(new, dim=1)
        means = torch.where(counts.unsqueeze(1) > 0, new, means)
    return means, counts


# --- EMA statistics ---------------------------------------------------------------------------------

@torch.no_grad()
def ema_update_(embed: Tensor, embed_avg: Tensor, cluster_size: Tensor, rows: Tensor, idx: Tensor,
                decay: float, eps: float) -> None:
    """VQ-VAE's EMA codebook step (Appendix A.1), in place: counts N and sums m move towards this
    batch's (all workers'), and the codes become m / N with Laplace-smoothed counts."""
    counts, sums = _counts_and_sums(rows.float(), idx, embed.shape[0])
    cluster_size.mul_(decay).add_(counts, alpha=1 - decay)
    embed_avg.mul_(decay).add_(sums, alpha=1 - decay)
    refresh_ema_codes_(embed, embed_avg, cluster_size, eps)


@torch.no_grad()
def refresh_ema_codes_(embed: Tensor, embed_avg: Tensor, cluster_size: Tensor, eps: float) -> None:
    """e_k = m_k / N~_k, N~_k = (N_k + eps) / (sum N + K eps) * sum N: the smoothing keeps a rarely used
    code's denominator away from zero."""
    n = cluster_size.sum()
    smoothed = (cluster_size + eps) / (n + embed.shape[0] * eps) * n
    embed.copy_(embed_avg / smoothed.unsqueeze(1))


@torch.no_grad()
def ema_usage_(usage: Tensor, idx: Tensor, decay: float) -> None:
    """Usage N_k <- decay N_k + (1 - decay) n_k, n_k this step's assignments over all workers (for
    codebooks learnt by gradient, which keep no EMA counts of their own)."""
    counts = torch.bincount(idx, minlength=usage.shape[0]).to(usage.dtype)
    usage.mul_(decay).add_(distributed.all_reduce_sum_(counts), alpha=1 - decay)


# --- dead codes -------------------------------------------------------------------------------------

@torch.no_grad()
def dead_code_replacements(usage: Tensor, threshold: float, rows: Tensor) -> tuple[Tensor, Tensor] | None:
    """Which codes to replace and by what: (code indices (M,), new vectors (M, D)) for the codes whose
    usage is below `threshold`, each given a distinct row of all workers' `rows`; None when no code is
    dead. With more dead codes than rows, a random subset of the dead codes is replaced now and the
    rest on later steps (a row given to two codes would make them duplicates). The choice is rank 0's,
    broadcast to all."""
    dead = usage < threshold
    if not bool(dead.any()):
        return None
    candidates = distributed.gather_rows(rows.float())
    if candidates.shape[0] == 0:
        return None
    dead_idx = dead.nonzero()[:, 0]
    if len(dead_idx) > len(candidates):
        dead_idx = torch.sort(dead_idx[torch.randperm(len(dead_idx), device=rows.device)[: len(candidates)]]).values
    vectors = sample_rows(candidates, len(dead_idx)).contiguous()
    return distributed.broadcast_(dead_idx.contiguous()), distributed.broadcast_(vectors)


class CodebookTricks(nn.Module):
    """The state k-means initialisation and dead-code replacement keep for one codebook learnt by
    gradient (`vqgan`): whether it was initialised, and EMA usage counts. Buffers are registered only
    for the tricks switched on, so a quantizer without them keeps its state dict.

    EMA codebooks (`vqgan-ema`, `rvq`) track usage in their own counts and use the functions above
    directly."""

    def __init__(self, codebook_size: int, options: CodebookTrickOptions, usage_decay: float) -> None:
        super().__init__()
        self.options, self.usage_decay = options, usage_decay
        if options.kmeans_init:
            self.register_buffer("initted", torch.tensor(False))
        if options.threshold_ema_dead_code > 0:
            # Counts start at one, as EMA codebooks' counts do: with a threshold below one a code is
            # declared dead only once its usage has decayed below it; above one, unused codes go at once.
            self.register_buffer("usage", torch.ones(codebook_size))

    @property
    def active(self) -> bool:
        return self.options.kmeans_init or self.options.threshold_ema_dead_code > 0

    def needs_init(self) -> bool:
        return self.options.kmeans_init and not bool(self.initted)

    @torch.no_grad()
    def init_(self, codes: Tensor, rows: Tensor, cosine: bool = False) -> None:
        """Overwrite `codes` (K, D) with the k-means centroids of `rows` and mark the codebook done."""
        means, _ = kmeans(rows, codes.shape[0], self.options.kmeans_iters, cosine=cosine)
        codes.copy_(means.to(codes.dtype))
        self.initted.fill_(True)

    @torch.no_grad()
    def after_step_(self, codes: Tensor, rows: Tensor, idx: Tensor, cosine: bool = False) -> None:
        """After a training forward pass: update usage with this step's assignments `idx` and move dead
        codes (rows of `codes`, in place) onto rows of `rows`."""
        threshold = self.options.threshold_ema_dead_code
        if threshold <= 0:
            return
        ema_usage_(self.usage, idx, self.usage_decay)
        replaced = dead_code_replacements(self.usage, threshold, F.normalize(rows, dim=1) if cosine else rows)
        if replaced is not None:
            code_idx, vectors = replaced
            codes[code_idx] = vectors.to(codes.dtype)
            self.usage[code_idx] = threshold
