"""VQCT: a visual codebook transferred from a language model, split by part of speech.

Codebook Transfer with Part-of-Speech for Vector-Quantized Image Modeling (Zhang et al., CVPR 2024),
https://arxiv.org/abs/2403.10071.

Codes are words. Adjectives and nouns of a caption corpus (codebooks/) are encoded by a frozen
pretrained language model; a 2-layer GCN over the adjective-noun co-occurrence graph (edges weighted
by their bigram counts) maps those vectors to the visual codebook, on every forward pass, so a code
moves with its graph neighbours. The encoder gives 2*dim channels: the first half is replaced by the
mean of its top-k nearest adjective codes, the second half by its nearest noun code. The loss is the
public code's: per half, commitment plus beta times the codebook term, the two halves summed.

Indices live in ONE index space of size K = n_adj + n_noun: adjectives [0, n_adj), nouns
[n_adj, K) (the noun index is offset, unlike the public code). `indices` is (B, H, W, top_k + 1):
the top_k adjective indices, nearest first, then the noun index. `decode_indices` recomputes the
codebook (no dropout) and redoes the top-k mean, so it reproduces z_q of eval-mode forward exactly.
`full_codebook_size` is the whole filtered vocabulary, the size the public code always uses.

Ablations (registered variants, or options on `vqct`):
    vqct-nopos    pos_split=False   one joint codebook of the K most frequent words; both halves search it
    vqct-mlp      transfer="mlp"    the same 2-layer network without the graph
    vqct-linear   transfer="linear" frozen language-model codes and only a linear map to dim
    vqct-random   codes="random"    frozen Gaussian vectors of the prior's shape through the same GCN
    vqct-noprior  codes="learned"   the public code's "no knowledge" ablation: a learned nn.Embedding
                                    codebook (uniform init), no language model, no GCN; same split
    vqct-top1     top_k=1           the adjective half takes its single nearest code
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.core.errors import UserError
from bench.core.option_ranges import AT_LEAST_ONE, NON_NEGATIVE, PROBABILITY, option

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

TRANSFERS = ("gcn", "mlp", "linear", "none")
CODES = ("lm", "random", "learned")
EDGE_WEIGHTS = ("count", "binary")
LOSSES = ("official", "standard", "legacy")


@dataclass
class VQCTOptions:
    # --- the prior (codebooks/): which words, which language model ---
    # cupl | text:PATH | coco:PATH | folder:PATH | union:SPEC,SPEC,... The paper's prior is ONE union of
    # CUB-200 and Oxford-102 captions (text_c10 folders) and MS-COCO captions for every dataset (docs/vqct.md);
    # those are not available offline, so the default is CuPL's ImageNet descriptions.
    corpus: str = "cupl"
    encoder: str = "minilm"  # minilm | glove | clip | clip:ID_OR_FOLDER | hf:ID_OR_FOLDER (paper: CLIP ViT-B/32)
    noun_template: str | None = None  # None: the encoder's default, the paper's "a photo of {}"
    adj_template: str | None = None  # None: the encoder's default, the paper's "a photo of {} object"
    min_count: int = option(10, NON_NEGATIVE)  # words seen more than this many times in the corpus (the paper's threshold)
    remove_stopwords: bool = False
    lemmatize: bool = True  # lemmatise nouns (the paper does)
    # --- the quantizer ---
    top_k: int = option(2, AT_LEAST_ONE)  # adjective half = mean of the top_k nearest adjective codes (the paper's k)
    pos_split: bool = True  # False: no part-of-speech split, one joint codebook (ablation)
    # gcn (the paper) | mlp (no graph) | linear (frozen codes + linear map) | none (the codebook itself
    # is learned; goes with codes="learned" and only with it)
    transfer: str = "gcn"
    # lm: language-model vectors | random: Gaussian vectors of the same shape and scale (no language, graph
    # kept) | learned: no input vectors at all, an nn.Embedding codebook (the public code's "no knowledge")
    codes: str = "lm"
    # count: A_ij = how often adjective i directly precedes noun j. The public code gives GCNConv one edge
    # entry per occurrence, and GCNConv sums repeated entries, so its graph is count-weighted.
    # binary: A_ij = 1 for every pair seen at least once (a deduplicated graph).
    edge_weight: str = "count"
    hidden_dim: int | None = option(None, AT_LEAST_ONE)  # GCN/MLP hidden width; None: dim, as the paper (in -> dim -> dim)
    dropout: float = option(0.5, PROBABILITY)  # between the two GCN layers, as the paper; off in eval mode
    # official: the public code's VQCT quantizer (taming's VectorQuantizer with legacy=True, its default):
    #   per half h, mean((sg[q_h] - z_h)^2) + beta * mean((q_h - sg[z_h])^2), the two halves summed, so the
    #   encoder gets commitment weight 1 on each half.
    # standard: vqgan's default, mean((q - sg[z])^2) + beta * mean((z - sg[q])^2) over all 2*dim channels
    #   (its gradient to z is 1/8 of the official one at beta 0.25).
    # legacy: vqgan's legacy=True, beta on the codebook term, one mean over all channels.
    loss: str = "official"
    beta: float = option(0.25, NON_NEGATIVE)  # the weight of the term that is not weight 1 (see `loss`)

    def build_config(self):
        """The codebooks.BuildConfig of this prior."""
        from codebooks import BuildConfig, PosRules

        rules = PosRules(min_count=self.min_count, remove_stopwords=self.remove_stopwords, lemmatize_nouns=self.lemmatize)
        return BuildConfig(self.corpus, self.encoder, self.noun_template, self.adj_template, rules)


def _check(options: VQCTOptions) -> None:
    for name, value, allowed in (("transfer", options.transfer, TRANSFERS), ("codes", options.codes, CODES),
                                 ("edge_weight", options.edge_weight, EDGE_WEIGHTS), ("loss", options.loss, LOSSES)):
        if value not in allowed:
            raise UserError(f"vqct: {name} must be one of {', '.join(allowed)}, got {value!r}")
    if (options.codes == "learned") != (options.transfer == "none"):
        raise UserError(f"vqct: codes='learned' (a learned codebook, no language model) goes with transfer='none' and "
                        f"only with it; got codes={options.codes!r}, transfer={options.transfer!r}")


def _check_top_k(options: VQCTOptions, codebook_size: int, adj_range: tuple[int, int]) -> None:
    n_adj_codes = adj_range[1] - adj_range[0]
    if options.top_k > n_adj_codes:
        raise UserError(f"vqct: top_k={options.top_k} needs at least that many adjective codes; K={codebook_size} "
                        f"gives {n_adj_codes}")


@dataclass
class Selection:
    """The K codes chosen from a prior: what the quantizer is built from."""

    x: Tensor  # (K, D) language-model vectors, in code order
    edge_index: Tensor  # (2, 2E) undirected edges over the codes, each pair once per direction
    edge_count: Tensor  # (2E,) bigram count of each entry of edge_index
    adj_range: tuple[int, int]  # codes the adjective half searches
    noun_range: tuple[int, int]  # codes the noun half searches
    words: list[str]  # code index -> word


def select_words(prior, codebook_size: int, pos_split: bool) -> Selection:
    """With the POS split: the K most frequent words, split in the vocabulary's adjective:noun ratio,
    adjectives first (K = the whole vocabulary takes every word). Without: the K most frequent words of
    either kind, one range both halves search (a word tagged both ways is two codes)."""
    from codebooks.prior import graph_tensors

    if pos_split:
        sub = prior.subset(codebook_size)
        x, edge_index, count = graph_tensors(sub)
        return Selection(x, edge_index, count, (0, sub.n_adj), (sub.n_adj, codebook_size), sub.adjectives + sub.nouns)
    total = prior.n_adj + prior.n_noun
    if codebook_size > total:
        raise UserError(f"codebook size {codebook_size} is larger than the prior's vocabulary ({total} words)")
    ranked = sorted([(-c, 0, i) for i, c in enumerate(prior.adj_counts)] + [(-c, 1, i) for i, c in enumerate(prior.noun_counts)])
    kept = ranked[:codebook_size]
    node = {(kind, i): j for j, (_, kind, i) in enumerate(kept)}
    x = torch.stack([(prior.adj_vectors if kind == 0 else prior.noun_vectors)[i] for _, kind, i in kept])
    pairs = [(node[(0, a)], node[(1, n)], c) for a, n, c in prior.edges if (0, a) in node and (1, n) in node]
    e = torch.tensor([p[:2] for p in pairs], dtype=torch.long).t() if pairs else torch.zeros(2, 0, dtype=torch.long)
    count = torch.tensor([float(p[2]) for p in pairs])
    words = [(prior.adjectives if kind == 0 else prior.nouns)[i] for _, kind, i in kept]
    return Selection(x, torch.cat([e, e.flip(0)], dim=1), torch.cat([count, count]), (0, codebook_size),
                     (0, codebook_size), words)


def quantizer_loss(q: Tensor, z: Tensor, dim: int, beta: float, form: str) -> tuple[Tensor, dict[str, Tensor]]:
    """The VQ loss of `form` (see VQCTOptions.loss) for codes q and latents z, (B, 2*dim, H, W) with the
    adjective half first. Returns the weighted loss and the unweighted terms (for "official", each the
    sum of its two per-half means)."""
    if form != "official":
        return codebook_commitment_loss(q, z, beta, legacy=form == "legacy")
    codebook = commitment = None
    for half in (slice(0, dim), slice(dim, 2 * dim)):
        q_h, z_h = q[:, half], z[:, half]
        cb, cm = F.mse_loss(q_h, z_h.detach()), F.mse_loss(z_h, q_h.detach())
        codebook, commitment = (cb, cm) if codebook is None else (codebook + cb, commitment + cm)
    return commitment + beta * codebook, {"codebook": codebook.detach(), "commitment": commitment.detach()}


def normalized_adjacency(edge_index: Tensor, num_nodes: int, edge_weight: Tensor | None = None) -> Tensor:
    """D^-1/2 (A + I) D^-1/2 as a sparse CSR matrix (Kipf & Welling's GCN propagation), exactly as
    torch_geometric's GCNConv normalises and aggregates: A_ij is the sum of the weights of the (i, j)
    entries of edge_index (1 each without `edge_weight`, so an entry given n times counts n times),
    self loops weight 1, D the row sums of A + I. edge_index must be symmetric with its weights and hold
    no self loops (GCNConv would replace a given self loop's weight rather than add 1)."""
    loops = torch.arange(num_nodes)
    weight = torch.ones(edge_index.shape[1]) if edge_weight is None else edge_weight.detach().float().cpu()
    indices = torch.cat([edge_index.cpu(), torch.stack([loops, loops])], dim=1)
    values = torch.cat([weight, torch.ones(num_nodes)])
    shape = (num_nodes, num_nodes)
    a = torch.sparse_coo_tensor(indices, values, shape, check_invariants=True).coalesce()  # repeated entries add up
    r, c = a.indices()
    deg = torch.zeros(num_nodes).index_add_(0, r, a.values())
    inv_sqrt = deg.pow(-0.5)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": we use only CSR @ dense
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_coo_tensor(a.indices(), a.values() * (inv_sqrt[r] * inv_sqrt[c]), shape,
                                       check_invariants=True).to_sparse_csr()


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
@register_method("vqct-noprior", "VQCT ablation (the public code's 'no knowledge'): learned codebook, no language "
                 "model, no GCN; same split, top-k mean and losses", codes="learned", transfer="none")
@register_method("vqct-random", "VQCT ablation: frozen Gaussian vectors of the prior's shape through the GCN (no "
                 "language)", codes="random")
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
        selection = select_words(load_prior(options), codebook_size, options.pos_split)
        _check_top_k(options, codebook_size, selection.adj_range)

    @classmethod
    def full_codebook_size(cls, dim: int, options: VQCTOptions) -> int:
        """Every adjective and noun of the prior (those seen more than min_count times): the public code's
        codebook, whatever its configured n_embed."""
        _check(options)
        prior = load_prior(options)
        return prior.n_adj + prior.n_noun

    @classmethod
    def parameter_count(cls, codebook_size: int, dim: int, options: VQCTOptions) -> int:
        """The transfer network's weights (the word vectors are frozen buffers); K x dim for the learned
        codebook."""
        if options.codes == "learned":
            return int(codebook_size) * int(dim)
        in_dim, hidden = load_prior(options).dim, options.hidden_dim or dim
        if options.transfer == "linear":
            return in_dim * dim + dim
        return in_dim * hidden + hidden + hidden * dim + dim  # both layers, each with its bias

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
        sel = select_words(load_prior(options), codebook_size, options.pos_split)
        self.adj_range, self.noun_range = sel.adj_range, sel.noun_range
        _check_top_k(options, codebook_size, self.adj_range)
        self.code_groups = {"adj": self.adj_range, "noun": self.noun_range} if options.pos_split else {}
        if options.codes == "learned":
            # The prior gave only the split sizes: these codes are not words. Taming's initialisation.
            self.words = None
            self.embedding = nn.Embedding(codebook_size, dim)
            self.embedding.weight.data.uniform_(-1.0 / codebook_size, 1.0 / codebook_size)
            return
        self.words = sel.words  # code index -> word (for figures; a word tagged both ways appears twice without the split)
        x = sel.x
        if options.codes == "random":
            x = torch.randn(x.shape) * x.std()  # same shape and overall scale, no language
        weight = sel.edge_count if options.edge_weight == "count" else torch.ones_like(sel.edge_count)
        # Frozen inputs (persistent: a checkpoint holds everything needed to decode its indices).
        self.register_buffer("lm_codes", x.float().contiguous())
        self.register_buffer("edge_index", sel.edge_index)
        self.register_buffer("edge_weight", weight.float())
        # Derived from the edges; sparse, so not saved (safetensors holds dense tensors only).
        self.register_buffer("adjacency", normalized_adjacency(sel.edge_index, codebook_size, weight), persistent=False)
        self.transfer = TransferNet(options.transfer, x.shape[1], options.hidden_dim or dim, dim, options.dropout)

    @classmethod
    def budget_bits(cls, codebook_size: int, dim: int, options: VQCTOptions, side: int) -> float:
        """top_k adjective indices and one noun index at K's adjective:noun split (top_k as given)."""
        if options.pos_split:
            n_adj, n_noun = load_prior(options).split(codebook_size)
        else:
            n_adj = n_noun = codebook_size
        return side * side * (options.top_k * math.log2(n_adj) + math.log2(n_noun))

    def index_level_sizes(self) -> tuple[int, ...]:
        """top_k adjective indices, each into the adjective codes, then one noun index into the nouns
        (without the POS split both ranges are the whole codebook)."""
        (a0, a1), (n0, n1) = self.adj_range, self.noun_range
        return (a1 - a0,) * self.options.top_k + (n1 - n0,)

    def code_labels(self) -> dict | None:
        return None if self.words is None else {"groups": self.code_groups, "words": list(self.words)}

    def codebook(self, dropout: bool = False) -> Tensor:
        """The visual codebook (K, dim): the transfer network applied to the frozen word vectors (or the
        learned codebook itself)."""
        if self.options.codes == "learned":
            return self.embedding.weight
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
        loss, logs = quantizer_loss(q, z, self.dim, self.options.beta, self.options.loss)
        z_q = straight_through(z, q)
        return QuantOut(z_q, idx.view(z.shape[0], z.shape[2], z.shape[3], -1), loss, logs)

    def decode_indices(self, indices: Tensor) -> Tensor:
        """(B, H, W, top_k+1) -> (B, 2*dim, H, W), with the codebook computed without dropout."""
        b, h, w, _ = indices.shape
        rows = self._lookup(self.codebook(dropout=False), indices.reshape(-1, indices.shape[-1]))
        return rows.view(b, h, w, -1).permute(0, 3, 1, 2).contiguous()


__all__ = ["GCNLayer", "Selection", "TransferNet", "VQCTOptions", "VQCTQuantizer", "normalized_adjacency", "propagate",
           "quantizer_loss", "select_words"]
