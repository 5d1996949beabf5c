"""The prior: a GPT-style causal transformer over token sequences (bench.generation.layout), as
taming's and LlamaGen's priors: token embeddings plus learned absolute position embeddings, pre-norm
blocks of causal self-attention and a 4x GELU MLP, a final LayerNorm and a linear head over the
vocabulary.

The input stream is [condition, token_0, ..., token_{T-2}] and the output at stream position i
predicts token_i, so the condition token is what the first token is predicted from. The condition
is a class embedding; index `num_classes` is the null class, which an unconditional prior always
sees (taming's start-of-sequence token) and a class-conditional one sees when its label is dropped
(classifier-free guidance). Sampling runs one token at a time through a key/value cache.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.generation.config import TransformerConfig


class KVCache:
    """Keys and values of every layer for the stream so far, preallocated for the whole sequence."""

    def __init__(self, n_layer: int, batch: int, n_head: int, max_len: int, head_dim: int, device: torch.device,
                 dtype: torch.dtype) -> None:
        shape = (n_layer, batch, n_head, max_len, head_dim)
        self.k = torch.empty(shape, device=device, dtype=dtype)
        self.v = torch.empty(shape, device=device, dtype=dtype)
        self.length = 0  # stream positions already in the cache

    def extend(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store this layer's new keys and values; returns every key and value so far."""
        end = self.length + k.shape[2]
        self.k[layer, :, :, self.length : end] = k
        self.v[layer, :, :, self.length : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.n_head, self.dropout = cfg.n_head, cfg.dropout
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        b, t, c = x.shape
        q, k, v = (y.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for y in self.qkv(x).split(c, dim=2))
        causal = True
        if cache is not None:
            if cache.length and t != 1:
                raise ValueError("a filled cache takes one new stream position at a time")
            causal = cache.length == 0  # one new query after the prefix sees every cached key
            k, v = cache.extend(layer, k, v)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                           is_causal=causal and t > 1)
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(b, t, c)))


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.n_embd), nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.mlp = nn.Sequential(nn.Linear(cfg.n_embd, 4 * cfg.n_embd), nn.GELU(), nn.Linear(4 * cfg.n_embd, cfg.n_embd),
                                 nn.Dropout(cfg.dropout))

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        x = x + self.attn(self.ln1(x), cache, layer)
        return x + self.mlp(self.ln2(x))


class TokenPrior(nn.Module):
    """p(tokens | class) over sequences of `length` tokens from a vocabulary of `vocab_size`."""

    def __init__(self, cfg: TransformerConfig, vocab_size: int, length: int, num_classes: int = 0) -> None:
        super().__init__()
        self.cfg, self.vocab_size, self.length, self.num_classes = cfg, vocab_size, length, num_classes
        self.tok_emb = nn.Embedding(vocab_size, cfg.n_embd)
        self.cond_emb = nn.Embedding(num_classes + 1, cfg.n_embd)  # the last row is the null class
        self.pos_emb = nn.Parameter(torch.zeros(1, length, cfg.n_embd))  # stream positions 0 .. length-1
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, vocab_size, bias=False)
        self.apply(self._init)
        nn.init.normal_(self.pos_emb, std=0.02)

    @staticmethod
    def _init(module: nn.Module) -> None:
        # GPT-2's N(0, 0.02) for every linear and embedding weight, zero biases
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    @property
    def null_class(self) -> int:
        return self.num_classes

    def forward(self, labels: Tensor, tokens: Tensor | None = None, cache: KVCache | None = None) -> Tensor:
        """Logits (B, n, vocab) of the next token after each of the n new stream positions.

        Without a cache the stream is [condition(labels), tokens...]: training passes tokens[:, :-1]
        and gets the logits of all `length` tokens. With a cache, the first call (cache empty) starts
        the stream as above and later calls continue it with one new token each."""
        start = 0 if cache is None else cache.length
        parts = [self.cond_emb(labels)[:, None]] if start == 0 else []
        if tokens is not None and tokens.shape[1]:
            parts.append(self.tok_emb(tokens))
        x = torch.cat(parts, dim=1)
        n = x.shape[1]
        if start + n > self.length:
            raise ValueError(f"stream of {start + n} positions is longer than the prior's {self.length}")
        x = self.drop(x + self.pos_emb[:, start : start + n])
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i)
        if cache is not None:
            cache.length += n
        return self.head(self.ln_f(x))

    def new_cache(self, batch: int, device: torch.device, dtype: torch.dtype = torch.float32) -> KVCache:
        c = self.cfg
        return KVCache(c.n_layer, batch, c.n_head, self.length, c.n_embd // c.n_head, device, dtype)

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        """Weight decay on Linear weights only, none on biases, norms and embeddings (taming, minGPT)."""
        decay = {id(m.weight) for m in self.modules() if isinstance(m, nn.Linear)}
        params = list(self.parameters())
        return [{"params": [p for p in params if id(p) in decay], "weight_decay": weight_decay},
                {"params": [p for p in params if id(p) not in decay], "weight_decay": 0.0}]

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())
