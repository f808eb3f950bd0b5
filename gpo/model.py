"""The GPO model: a transformer without positional encodings over a set of survey points.

Each point is one (question, option): its base-LLM embedding x and the group's share y.
Context points enter as [x; y], target points as [x; 0]. Context attends to context,
targets attend to context only, so in every layer the keys and values are the context
tokens alone: one attention call of (N_ctx + N_tar) queries over N_ctx keys, about half
the work of a full (N_ctx + N_tar)^2 mask, with identical outputs (tests compare it with
`nn.TransformerEncoder` under the explicit mask). The head gives a mean and a log-std per
target; means are softmaxed within each question (ops.segment_softmax).

Variants, each a config switch:
- `prior`: every point also carries a baseline's probability p0 (and the context its
  residual y - p0), and the mean is log p0 plus a learned correction whose last layer starts
  at zero, so training starts from the baseline's predictions;
- `basis`: every point also carries the training groups' shares of that option (the group
  basis; a training group's own column is replaced by the mean of the others), so the model
  can learn which training groups the context resembles.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gpo.errors import require

PRIORS = ("none", "mean", "mixture", "logit", "population", "demographic")  # baselines a residual GPO can correct


@dataclass
class ModelConfig:
    d_model: int = 128
    n_layers: int = 6
    n_heads: int = 4
    d_ff: int = 128
    embed_depth: int = 4  # layers of the input MLP on [x; y]
    dropout: float = 0.0
    prior: str = "none"  # "none" (the paper), or a baseline to correct: groups "mean", "mixture", "logit";
    # respondents "population", "demographic"
    basis: bool = False  # also read the training groups' shares of every point

    def __post_init__(self):
        for key in ("d_model", "n_layers", "n_heads", "d_ff", "embed_depth"):
            require(getattr(self, key) >= 1, key, "at least 1", getattr(self, key))
        require(self.d_model % self.n_heads == 0, "d_model", f"a multiple of n_heads ({self.n_heads})", self.d_model)
        require(0 <= self.dropout < 1, "dropout", "a probability in [0, 1)", self.dropout)
        require(self.prior in PRIORS, "prior", f"one of {PRIORS}", self.prior)


def mlp(d_in: int, d_hidden: int, d_out: int, depth: int) -> nn.Sequential:
    dims = [d_in] + [d_hidden] * (depth - 1)
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
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
        q, k, v = self.qkv(h).split(D, dim=-1)
        k, v = k[:, :n_ctx], v[:, :n_ctx]  # targets are never keys
        q, k, v = (t.reshape(B, -1, H, D // H).transpose(1, 2) for t in (q, k, v))  # (B, H, T, D/H)
        has_ctx = ctx_valid.any(-1)  # a group with no context (k = 0) attends to nothing
        mask = (ctx_valid | ~has_ctx[:, None])[:, None, None, :]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        a = a.transpose(1, 2).reshape(B, N, D) * has_ctx[:, None, None]
        return self.out(a)


class Block(nn.Module):
    """Post-LN encoder layer with ReLU, as nn.TransformerEncoderLayer(norm_first=False)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn = ContextAttention(cfg.d_model, cfg.n_heads, cfg.dropout)
        self.ff = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.ReLU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.d_ff, cfg.d_model))
        self.norm1, self.norm2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.drop1, self.drop2 = nn.Dropout(cfg.dropout), nn.Dropout(cfg.dropout)

    def forward(self, h, n_ctx, ctx_valid):
        h = self.norm1(h + self.drop1(self.attn(h, n_ctx, ctx_valid)))
        return self.norm2(h + self.drop2(self.ff(h)))


class GPO(nn.Module):
    def __init__(self, cfg: ModelConfig, d_x: int, n_basis: int = 0):
        super().__init__()
        self.cfg, self.d_x, self.n_basis = cfg, d_x, n_basis if cfg.basis else 0
        d_in = d_x + (3 if cfg.prior != "none" else 1) + self.n_basis
        self.embed = mlp(d_in, cfg.d_model, cfg.d_model, cfg.embed_depth)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.head = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.ReLU(), nn.Linear(cfg.d_ff, 2))
        if cfg.prior != "none":
            nn.init.zeros_(self.head[-1].weight)  # start exactly at the prior
            nn.init.zeros_(self.head[-1].bias)

    def forward(self, x, y, valid, n_ctx: int, prior=None, basis=None):
        """x (B, N, d_x), y (B, N), valid (B, N): the first n_ctx tokens are context;
        prior (B, N) and basis (B, N, n_basis) for the variants that read them.

        Returns the mean logits and log-stds (B, N - n_ctx) of the targets. The targets' y
        is never read, so labels can travel in the same tensor.
        """
        is_ctx = torch.zeros_like(valid)
        is_ctx[:, :n_ctx] = True
        y_in = torch.where(is_ctx, y, 0.0)
        features = [x, y_in[..., None]]
        if self.cfg.prior != "none":
            features += [prior[..., None], torch.where(is_ctx, y - prior, 0.0)[..., None]]
        if self.n_basis:
            features.append(basis)
        h = self.embed(torch.cat(features, -1))  # (B, N, D)
        ctx_valid = valid[:, :n_ctx]
        for block in self.blocks:
            h = block(h, n_ctx, ctx_valid)
        mean, log_std = self.head(h[:, n_ctx:]).unbind(-1)
        if self.cfg.prior != "none":
            mean = mean + prior[:, n_ctx:].clamp_min(1e-6).log()
        return mean, log_std

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
