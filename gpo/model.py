"""The GPO model: a transformer without positional encodings over a set of survey points.

Each point is one (question, option): its features f (gpo/features.py: the base-LLM embedding
and what else a variant reads) and the group's share y. Context points enter as [f; y], target
points as [f; 0]. Context attends to context, targets attend to context only, so in every
layer the keys and values are the context tokens alone: one attention call of (N_ctx + N_tar) queries over N_ctx keys, about half
the work of a full (N_ctx + N_tar)^2 mask, with identical outputs (tests compare it with
`nn.TransformerEncoder` under the explicit mask). The head gives a mean and a log-std per
target; means are softmaxed within each question (ops.segment_softmax).

The readout (`readout`):
- "mlp" (the paper): each target's mean from its own final state. The context reaches a target
  only through softmax attention, so reading it needs products of a context label and a point
  feature, which the input MLP on [f; y] must build from y, one input among hundreds; at a
  prior that is already the best context-free prediction that direction has no first-order
  gradient, and training stays at the prior (BENCHMARKS.md, "Why GPO stayed at its prior").
- "ridge": the same plus an in-context ridge regression: the context's residuals y - p0 are
  regressed on learned features k(h) of the context's final states, and each target adds its
  prediction q(h_t) . w. Reading the context is then one linear solve on features the
  transformer learns, and its gradient is first order from the first step (q starts at zero,
  so the readout starts at exactly nothing).

Variants, each a config switch:
- `prior`: the mean is log p0 plus a learned correction whose last layer starts at zero, so
  training starts from a baseline's predictions p0; every point also carries p0 (and the
  context its residual y - p0). "none" (the paper) is the uniform distribution as p0: softmax
  means cannot tell it from no prior, and the points carry only [f; y].
- `features`: what a point carries besides its embedding (gpo/features.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gpo.ops import distinct_rows


def mlp(d_in: int, d_hidden: int, d_out: int, depth: int) -> nn.Sequential:
    dims = [d_in] + [d_hidden] * (depth - 1)
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.Linear(dims[-1], d_out))


class ContextAttention(nn.Module):
    """Multi-head attention of every token over the context tokens (the first n_ctx)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, h: torch.Tensor, n_ctx: int, ctx_valid: torch.Tensor) -> torch.Tensor:
        B, N, D = h.shape
        H = self.n_heads
        w, b = self.qkv.weight, self.qkv.bias
        q = F.linear(h, w[:D], b[:D])
        k, v = F.linear(h[:, :n_ctx], w[D:], b[D:]).split(D, dim=-1)  # targets are never keys or values
        q, k, v = (t.reshape(B, -1, H, D // H).transpose(1, 2) for t in (q, k, v))  # (B, H, T, D/H)
        has_ctx = ctx_valid.any(-1)  # a group with no context (k = 0) attends to nothing
        mask = (ctx_valid | ~has_ctx[:, None])[:, None, None, :]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        a = a.transpose(1, 2).reshape(B, N, D) * has_ctx[:, None, None]
        return self.out(a)


class Block(nn.Module):
    """Post-LN encoder layer with ReLU, as nn.TransformerEncoderLayer(norm_first=False)."""

    def __init__(self, cfg):
        super().__init__()
        self.attn = ContextAttention(cfg.d_model, cfg.n_heads, cfg.dropout)
        self.ff = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout),
                                nn.Linear(cfg.d_ff, cfg.d_model))
        self.norm1, self.norm2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.drop1, self.drop2 = nn.Dropout(cfg.dropout), nn.Dropout(cfg.dropout)

    def forward(self, h, n_ctx, ctx_valid):
        h = self.norm1(self.drop1(self.attn(h, n_ctx, ctx_valid)).add_(h))  # in place: a fresh tensor each
        return self.norm2(self.drop2(self.ff(h)).add_(h))


class RidgeReadout(nn.Module):
    """Each target's share of what the context says beyond p0: the context's residuals r
    (B, M) regressed by ridge on keys k(h_ctx), read at the targets' queries q(h_tar)."""

    def __init__(self, d_model: int, d_k: int):
        super().__init__()
        self.key, self.query = nn.Linear(d_model, d_k), nn.Linear(d_model, d_k)
        self.alpha = nn.Parameter(torch.zeros(()))  # ridge strength, softplus(alpha)
        nn.init.zeros_(self.query.weight)  # the readout starts at exactly nothing
        nn.init.zeros_(self.query.bias)

    def forward(self, h_ctx, h_tar, r, ctx_valid):
        k = self.key(h_ctx) * ctx_valid[..., None]  # (B, M, d_k); padding reads nothing
        eye = torch.eye(k.shape[-1], device=k.device, dtype=k.dtype)
        w = torch.linalg.solve(k.transpose(1, 2) @ k + (F.softplus(self.alpha) + 1e-3) * eye,
                               k.transpose(1, 2) @ (r * ctx_valid)[..., None])  # (B, d_k, 1)
        return (self.query(h_tar) @ w).squeeze(-1)  # (B, T)


class GPO(nn.Module):
    """`cfg` is a config's model section (gpo.config.ModelConfig); `d_features` a point's width."""

    def __init__(self, cfg, d_features: int):
        super().__init__()
        self.cfg, self.d_features = cfg, d_features
        self.residual = cfg.prior != "none"
        self.embed = mlp(d_features + (3 if self.residual else 1), cfg.d_model, cfg.d_model, cfg.embed_depth)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.head = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.ReLU(inplace=True), nn.Linear(cfg.d_ff, 2))
        self.readout = RidgeReadout(cfg.d_model, cfg.readout_dim) if cfg.readout == "ridge" else None
        if self.residual:
            nn.init.zeros_(self.head[-1].weight)  # start exactly at the prior
            nn.init.zeros_(self.head[-1].bias)

    def forward(self, features, y, valid, n_ctx: int, prior, table=None, ids=None):
        """features (B, N, d), y (B, N), valid (B, N), prior (B, N): the first n_ctx tokens are
        context; prior is p0, the uniform distribution for the paper's GPO. A point's leading
        features may come as a table (P, d_features - d) of every point, read at point ids
        (B, N): the table is projected once, not once per token.

        Returns the mean logits and log-stds (B, N - n_ctx) of the targets. The targets' y
        is never read, so labels can travel in the same tensor.
        """
        if n_ctx == 0 and not self.training:
            return self.without_context(features, valid, prior, table, ids)
        return self.compute(features, y, valid, n_ctx, prior, table, ids)

    def compute(self, features, y, valid, n_ctx: int, prior, table=None, ids=None):
        """`forward`, every token computed."""
        is_ctx = torch.zeros_like(valid)
        is_ctx[:, :n_ctx] = True
        y_in = torch.where(is_ctx, y, 0.0)
        residual = torch.where(is_ctx, y - prior, 0.0)
        tokens = [features, y_in[..., None]] + ([prior[..., None], residual[..., None]] if self.residual else [])
        h = self.embed_tokens(tokens, table, ids)  # (B, N, D)
        ctx_valid = valid[:, :n_ctx]
        for block in self.blocks:
            h = block(h, n_ctx, ctx_valid)
        mean, log_std = self.head(h[:, n_ctx:]).unbind(-1)
        if self.readout is not None:
            mean = mean + self.readout(h[:, :n_ctx], h[:, n_ctx:], residual[:, :n_ctx], ctx_valid)
        # log p0 is constant within a question when p0 is uniform: softmax means never see it
        return mean + prior[:, n_ctx:].clamp_min(1e-6).log(), log_std

    def without_context(self, features, valid, prior, table=None, ids=None):
        """`forward` with no context: a target attends to nothing, so its prediction is a function
        of its own token (point, features, prior) and each distinct token is computed once (at
        k = 0, tasks with the same prior share every one)."""
        B, N = valid.shape
        point = ids if ids is not None else torch.zeros_like(valid, dtype=torch.long)
        columns = [features, prior[..., None], valid[..., None], point[..., None]]
        key = torch.cat([c.float() for c in columns], -1).flatten(0, 1)  # point ids < 2^24 are exact
        first, inverse = distinct_rows(key)
        f, p0, ok, at = key[first][None].split([features.shape[-1], 1, 1, 1], -1)
        mean, log_std = self.compute(f, torch.zeros_like(p0[..., 0]), ok[..., 0].bool(), 0, p0[..., 0], table,
                                     at[..., 0].long() if ids is not None else None)
        return mean[0, inverse].view(B, N), log_std[0, inverse].view(B, N)

    def embed_tokens(self, tokens: list[torch.Tensor], table=None, ids=None) -> torch.Tensor:
        """The input MLP on each token's [point features; y; ...], its first layer split: a linear
        map of a concatenation is the sum of its blocks' maps, so a table of points is mapped
        once per point and gathered, not once per token."""
        first = self.embed[0]
        d = 0 if table is None else table.shape[1]
        h = F.linear(torch.cat(tokens, -1), first.weight[:, d:], first.bias)
        if table is not None:
            h = h + F.linear(table, first.weight[:, :d])[ids.clamp_min(0)]
        return self.embed[1:](h)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
