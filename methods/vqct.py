"""VQCT: a visual codebook transferred from a language model, split by part of speech.

Codebook Transfer with Part-of-Speech for Vector-Quantized Image Modeling (Zhang et al., CVPR 2024),
https://arxiv.org/abs/2403.10071.

Codes are words. Adjectives and nouns of a caption corpus (codebooks/) are encoded by a frozen
pretrained language model; a 2-layer GCN over the adjective-noun co-occurrence graph maps those
vectors to the visual codebook, on every forward pass, so a code moves with its graph neighbours.
The encoder gives 2*dim channels: the first half is replaced by the mean of its top-k nearest
adjective codes, the second half by its nearest noun code.

Indices live in ONE index space of size K = n_adj + n_noun: adjectives [0, n_adj), nouns
[n_adj, K) (the noun index is offset, unlike the public code). `indices` is (B, H, W, top_k + 1):
the top_k adjective indices, nearest first, then the noun index. `decode_indices` recomputes the
codebook (no dropout) and redoes the top-k mean, so it reproduces z_q of eval-mode forward exactly.

Ablations (registered variants, or options on `vqct`):
    vqct-nopos   pos_split=False   one joint codebook of the K most frequent words; both halves search it
    vqct-mlp     transfer="mlp"    the same 2-layer network without the graph
    vqct-linear  transfer="linear" frozen language-model codes and only a linear map to dim
    vqct-random  codes="random"    random Gaussian codes of the same shape instead of the language model's
    vqct-top1    top_k=1           the adjective half takes its single nearest code
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.core.errors import UserError

from .base import (
    Quantizer,
    QuantOut,
    codebook_commitment_loss,
    flatten_latent,
    nearest_codes,
    straight_through,
    unflatten_latent,
)
from .registry import register_method

TRANSFERS = ("gcn", "mlp", "linear")
CODES = ("lm", "random")


@dataclass
class VQCTOptions:
    # --- the prior (codebooks/): which words, which language model ---
    corpus: str = "cupl"  # cupl | text:PATH | coco:PATH | folder:PATH; offline default: CuPL descriptions
    encoder: str = "minilm"  # minilm | glove | clip | clip:ID_OR_FOLDER | hf:ID_OR_FOLDER (paper: CLIP ViT-B/32)
    noun_template: str | None = None  # None: the encoder's default, the paper's "a photo of {}"
    adj_template: str | None = None  # None: the encoder's default, the paper's "a photo of {} object"
    min_count: int = 10  # words seen more than this many times in the corpus (the paper's threshold)
    remove_stopwords: bool = False
    lemmatize: bool = True  # lemmatise nouns (the paper does)
    # --- the quantizer ---
    top_k: int = 2  # adjective half = mean of the top_k nearest adjective codes (the paper's k)
    pos_split: bool = True  # False: no part-of-speech split, one joint codebook (ablation)
    transfer: str = "gcn"  # gcn (the paper) | mlp (no graph) | linear (frozen codes + linear map)
    codes: str = "lm"  # lm: language-model vectors | random: Gaussian vectors of the same shape (no language prior)
    hidden_dim: int | None = None  # GCN/MLP hidden width; None: dim, as the paper (in -> dim -> dim)
    dropout: float = 0.5  # between the two GCN layers, as the paper; off in eval mode
    beta: float = 0.25  # commitment weight, as vqgan
    legacy: bool = False  # beta on the codebook term instead, as vqgan's legacy option

    def build_config(self):
        """The codebooks.BuildConfig of this prior."""
        from codebooks import BuildConfig, PosRules

        rules = PosRules(min_count=self.min_count, remove_stopwords=self.remove_stopwords, lemmatize_nouns=self.lemmatize)
        return BuildConfig(self.corpus, self.encoder, self.noun_template, self.adj_template, rules)


def _check(options: VQCTOptions) -> None:
    if options.transfer not in TRANSFERS:
        raise UserError(f"vqct: transfer must be one of {', '.join(TRANSFERS)}, got {options.transfer!r}")
    if options.codes not in CODES:
        raise UserError(f"vqct: codes must be one of {', '.join(CODES)}, got {options.codes!r}")
    if options.top_k < 1:
        raise UserError(f"vqct: top_k must be >= 1, got {options.top_k}")
    if not 0.0 <= options.dropout < 1.0:
        raise UserError(f"vqct: dropout must be in [0, 1), got {options.dropout}")
    if options.hidden_dim is not None and options.hidden_dim < 1:
        raise UserError(f"vqct: hidden_dim must be positive, got {options.hidden_dim}")


def _check_top_k(options: VQCTOptions, codebook_size: int, adj_range: tuple[int, int]) -> None:
    n_adj_codes = adj_range[1] - adj_range[0]
    if options.top_k > n_adj_codes:
        raise UserError(f"vqct: top_k={options.top_k} needs at least that many adjective codes; K={codebook_size} "
                        f"gives {n_adj_codes}")


def select_words(prior, codebook_size: int, pos_split: bool):
    """The K codes' node features (K, D), undirected edge index (2, 2E) over them, the adjective
    and noun index ranges, and the words. With the POS split: the K most frequent words, split in the vocabulary's
    adjective:noun ratio, adjectives first. Without: the K most frequent words of either kind."""
    from codebooks.prior import graph_tensors

    if pos_split:
        sub = prior.subset(codebook_size)
        x, edge_index = graph_tensors(sub)
        return x, edge_index, (0, sub.n_adj), (sub.n_adj, codebook_size), sub.adjectives + sub.nouns
    total = prior.n_adj + prior.n_noun
    if codebook_size > total:
        raise UserError(f"codebook size {codebook_size} is larger than the prior's vocabulary ({total} words)")
    ranked = sorted([(-c, 0, i) for i, c in enumerate(prior.adj_counts)] + [(-c, 1, i) for i, c in enumerate(prior.noun_counts)])
    kept = ranked[:codebook_size]
    node = {(kind, i): j for j, (_, kind, i) in enumerate(kept)}
    x = torch.stack([(prior.adj_vectors if kind == 0 else prior.noun_vectors)[i] for _, kind, i in kept])
    pairs = [(node[(0, a)], node[(1, n)]) for a, n, _ in prior.edges if (0, a) in node and (1, n) in node]
    e = torch.tensor(pairs, dtype=torch.long).t() if pairs else torch.zeros(2, 0, dtype=torch.long)
    words = [(prior.adjectives if kind == 0 else prior.nouns)[i] for _, kind, i in kept]
    return x, torch.cat([e, e.flip(0)], dim=1), (0, codebook_size), (0, codebook_size), words


def normalized_adjacency(edge_index: Tensor, num_nodes: int) -> Tensor:
    """D^-1/2 (A + I) D^-1/2 as a sparse CSR matrix (Kipf & Welling's GCN propagation), A symmetric 0/1."""
    loops = torch.arange(num_nodes)
    row = torch.cat([edge_index[0].cpu(), loops])
    col = torch.cat([edge_index[1].cpu(), loops])
    shape = (num_nodes, num_nodes)
    a = torch.sparse_coo_tensor(torch.stack([row, col]), torch.ones(row.numel()), shape, check_invariants=True).coalesce()
    r, c = a.indices()  # coalesced: a repeated edge counts once
    deg = torch.bincount(r, minlength=num_nodes).float()
    inv_sqrt = deg.pow(-0.5)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": we use only CSR @ dense
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_coo_tensor(a.indices(), inv_sqrt[r] * inv_sqrt[c], shape, check_invariants=True).to_sparse_csr()


class _SymmetricPropagation(torch.autograd.Function):
    """A_hat @ h for a fixed, symmetric sparse A_hat. Its gradient is A_hat^T @ grad = A_hat @ grad,
    the same CSR product; autograd's own backward of a CSR product converts formats every step."""

    @staticmethod
    def forward(ctx, adjacency: Tensor, h: Tensor) -> Tensor:
        ctx.adjacency = adjacency
        return torch.sparse.mm(adjacency, h)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[None, Tensor]:
        return None, torch.sparse.mm(ctx.adjacency, grad)


def propagate(adjacency: Tensor, h: Tensor) -> Tensor:
    """A_hat @ h with A_hat from `normalized_adjacency` (symmetric by construction)."""
    return _SymmetricPropagation.apply(adjacency, h)


def fast_dropout(h: Tensor, p: float, training: bool) -> Tensor:
    """F.dropout's distribution; on the CPU from one uniform draw, ~4x faster than its bernoulli_
    (measured at 1024 x 256), which made dropout a tenth of the VQCT quantizer's time."""
    if not training or p == 0.0 or h.device.type != "cpu":
        return F.dropout(h, p, training)
    keep = torch.rand_like(h).ge_(p)
    return h * keep.to(h.dtype).mul_(1.0 / (1.0 - p))


class GCNLayer(nn.Module):
    """One graph convolution: A_hat (X W) + b, with A_hat precomputed (torch_geometric's GCNConv)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.lin = nn.Linear(in_dim, out_dim, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_dim))
        nn.init.xavier_uniform_(self.lin.weight)  # glorot, as GCNConv

    def forward(self, x: Tensor, adjacency: Tensor, propagated: bool = False) -> Tensor:
        """`propagated`: x is already A_hat X, and A_hat (X W) = (A_hat X) W needs no graph product here."""
        h = self.lin(x)
        return (h if propagated else propagate(adjacency, h)) + self.bias


class TransferNet(nn.Module):
    """Language-model vectors (K, D_lm) -> visual codebook (K, dim): 2-layer GCN (or MLP, or linear)."""

    def __init__(self, kind: str, in_dim: int, hidden: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        self.kind, self.dropout = kind, dropout
        if kind == "gcn":
            self.layer1, self.layer2 = GCNLayer(in_dim, hidden), GCNLayer(hidden, out_dim)
        elif kind == "mlp":
            self.layer1, self.layer2 = nn.Linear(in_dim, hidden), nn.Linear(hidden, out_dim)
        else:
            self.layer1 = nn.Linear(in_dim, out_dim)

    def forward(self, x: Tensor, adjacency: Tensor, dropout: bool, x_propagated: Tensor | None = None) -> Tensor:
        """`x_propagated`: A_hat @ x, when the caller keeps it (x is frozen, so it never changes)."""
        if self.kind == "linear":
            return self.layer1(x)
        if self.kind == "gcn":
            if x_propagated is None:
                h = self.layer1(x, adjacency)
            else:
                h = self.layer1(x_propagated, adjacency, propagated=True)
            h = fast_dropout(F.relu(h), self.dropout, dropout)
            return self.layer2(h, adjacency)
        h = fast_dropout(F.relu(self.layer1(x)), self.dropout, dropout)
        return self.layer2(h)


def load_prior(options: VQCTOptions):
    from codebooks import build_prior

    return build_prior(options.build_config())


@register_method("vqct-top1", "VQCT ablation: adjective half takes its single nearest code (top_k=1)", top_k=1)
@register_method("vqct-random", "VQCT ablation: random codes of the same shape, no language prior", codes="random")
@register_method("vqct-linear", "VQCT ablation: frozen language-model codes and only a linear map", transfer="linear")
@register_method("vqct-mlp", "VQCT ablation: MLP instead of the GCN (no adjective-noun graph)", transfer="mlp")
@register_method("vqct-nopos", "VQCT ablation: no part-of-speech split, one joint word codebook", pos_split=False)
@register_method("vqct", "VQCT: language-model word codes split into adjectives/nouns, transferred by a GCN")
class VQCTQuantizer(Quantizer):
    """VQCT (https://arxiv.org/abs/2403.10071): word codes from a language model, transferred by a GCN."""

    Options = VQCTOptions

    @classmethod
    def check(cls, codebook_size: int, dim: int, options: VQCTOptions) -> None:
        """The options, then K against the prior's vocabulary and top_k against the adjective codes
        K gives. Loads the prior, building it on first use (cached afterwards)."""
        _check(options)
        _, _, adj_range, _, _ = select_words(load_prior(options), codebook_size, options.pos_split)
        _check_top_k(options, codebook_size, adj_range)

    @classmethod
    def prepare(cls, codebook_size: int, dim: int, options: VQCTOptions) -> None:
        """Build and cache the language-model prior once, and check that it has K words."""
        cls.check(codebook_size, dim, options)

    def __init__(self, codebook_size: int, dim: int, options: VQCTOptions) -> None:
        super().__init__()
        _check(options)
        self.options = options
        self.codebook_size = codebook_size
        self.dim = dim
        self.latent_channels = 2 * dim
        prior = load_prior(options)
        x, edge_index, self.adj_range, self.noun_range, words = select_words(prior, codebook_size, options.pos_split)
        _check_top_k(options, codebook_size, self.adj_range)
        self.code_groups = {"adj": self.adj_range, "noun": self.noun_range} if options.pos_split else {}
        self.words = words  # code index -> word (for figures; a word tagged both ways appears twice without the split)
        if options.codes == "random":
            x = torch.randn(x.shape) * x.std()  # same shape and overall scale, no language
        # Frozen inputs (persistent: a checkpoint holds everything needed to decode its indices).
        self.register_buffer("lm_codes", x.float().contiguous())
        self.register_buffer("edge_index", edge_index)
        # Derived from edge_index; sparse, so not saved (safetensors holds dense tensors only).
        self.register_buffer("adjacency", normalized_adjacency(edge_index, codebook_size), persistent=False)
        self.transfer = TransferNet(options.transfer, x.shape[1], options.hidden_dim or dim, dim, options.dropout)

    def code_labels(self) -> dict:
        return {"groups": self.code_groups, "words": list(self.words)}

    def codebook(self, dropout: bool = False) -> Tensor:
        """The visual codebook (K, dim): the transfer network applied to the frozen word vectors."""
        x_propagated = self._propagated_codes() if self.options.transfer == "gcn" else None
        return self.transfer(self.lm_codes, self.adjacency, dropout, x_propagated)

    def _propagated_codes(self) -> Tensor:
        """A_hat @ lm_codes, computed once: the word vectors are frozen. Keyed on the buffer's storage
        and version, so loading a state dict or moving the module recomputes it."""
        key = (self.lm_codes.data_ptr(), self.lm_codes._version, self.adjacency.device)
        if getattr(self, "_propagated_key", None) != key:
            with torch.no_grad():
                self._propagated = propagate(self.adjacency, self.lm_codes)
            self._propagated_key = key
        return self._propagated

    @staticmethod
    def _lookup(codebook: Tensor, idx: Tensor) -> Tensor:
        """(N, top_k + 1) global indices, adjectives then the noun -> (N, 2*dim) code rows: the mean of
        the adjective codes beside the noun code. embedding_bag gathers and averages in one pass (slicing
        one gather of all top_k + 1 codes instead made the backward fill two (N, top_k + 1, dim) zero tensors)."""
        adjectives = F.embedding_bag(idx[:, :-1].contiguous(), codebook, mode="mean")
        return torch.cat([adjectives, F.embedding(idx[:, -1], codebook)], dim=1)

    def forward(self, z: Tensor) -> QuantOut:
        codebook = self.codebook(dropout=self.training)
        rows = flatten_latent(z)
        (a0, a1), (n0, n1) = self.adj_range, self.noun_range
        adj_idx = nearest_codes(rows[:, : self.dim], codebook[a0:a1], self.options.top_k).add_(a0)
        noun_idx = nearest_codes(rows[:, self.dim :], codebook[n0:n1], 1).add_(n0)
        idx = torch.cat([adj_idx, noun_idx], dim=1)
        q = unflatten_latent(self._lookup(codebook, idx), z)
        loss, logs = codebook_commitment_loss(q, z, self.options.beta, self.options.legacy)
        z_q = straight_through(z, q)
        return QuantOut(z_q, idx.view(z.shape[0], z.shape[2], z.shape[3], -1), loss, logs)

    def decode_indices(self, indices: Tensor) -> Tensor:
        """(B, H, W, top_k+1) -> (B, 2*dim, H, W), with the codebook computed without dropout."""
        b, h, w, _ = indices.shape
        rows = self._lookup(self.codebook(dropout=False), indices.reshape(-1, indices.shape[-1]))
        return rows.view(b, h, w, -1).permute(0, 3, 1, 2).contiguous()


__all__ = ["VQCTOptions", "VQCTQuantizer", "normalized_adjacency", "propagate", "select_words", "GCNLayer", "TransferNet"]
