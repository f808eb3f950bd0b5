"""Cheap baselines, evaluated on the same tasks as GPO; each returns (B, P) probabilities.

- uniform: every option of a question equally likely.
- mean: the mean distribution of the training groups (no context at all).
- mixture: the group as a non-negative mixture of the training groups, fitted by NNLS on
  its context points (weights renormalised to sum to one), predicting every question with
  that mixture of the training groups' distributions.
- ridge: the mean prior plus a kernel ridge regression of the context residuals y - mean
  on the (unit-normalised) embeddings; clipped and renormalised within each question.

The training groups form the *basis*. A group inside the basis (a training task) never
sees its own column: its mean and mixture leave it out, so training matches test.
Missing shares (GlobalOpinionQA: countries answer different questions) are imputed by the
mean of the basis groups that answered, and by the uniform distribution where none did.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gpo.ops import nnls
from gpo.tasks import Batch, Points


def per_question_normalise(p: torch.Tensor, point_question: torch.Tensor) -> torch.Tensor:
    """Rescale (B, P) so the options of each question sum to one."""
    totals = torch.zeros(p.shape[0], int(point_question.max()) + 1, dtype=p.dtype, device=p.device)
    totals = totals.index_add(1, point_question, p)
    return p / totals[:, point_question].clamp_min(1e-12)


def uniform_shares(points: Points) -> torch.Tensor:
    n_options = (points.question_points >= 0).sum(1)  # (Q,)
    return 1.0 / n_options[points.point_question].to(torch.float32)  # (P,)


@dataclass
class Basis:
    y: torch.Tensor  # (J, P) shares of the basis groups, imputed
    column: torch.Tensor  # (G,) basis column of each group of the survey, -1 if not in it

    @classmethod
    def build(cls, points: Points, groups: list[int]) -> "Basis":
        y = points.y[groups]
        answered = ~y.isnan()
        mean = y.nan_to_num(0).sum(0) / answered.sum(0).clamp_min(1)
        mean = torch.where(answered.any(0), mean, uniform_shares(points))
        column = torch.full((points.y.shape[0],), -1, dtype=torch.long, device=points.device)
        column[groups] = torch.arange(len(groups), device=points.device)
        return cls(torch.where(answered, y, mean), column)

    def own(self, groups: torch.Tensor) -> torch.Tensor:
        """(B, J) True at each row's own column (training tasks leave it out)."""
        cols = self.column[groups]
        return torch.arange(self.y.shape[0], device=cols.device)[None] == cols[:, None]


def uniform(points: Points, basis: Basis, batch: Batch) -> torch.Tensor:
    return uniform_shares(points).expand(batch.x.shape[0], -1)


def mean(points: Points, basis: Basis, batch: Batch) -> torch.Tensor:
    weights = (~basis.own(batch.groups)).float()
    return (weights / weights.sum(1, keepdim=True)) @ basis.y


def mixture(points: Points, basis: Basis, batch: Batch) -> torch.Tensor:
    ctx = batch.points[:, : batch.n_ctx]  # (B, M)
    ok = ctx >= 0
    own = basis.own(batch.groups)
    A = basis.y[:, ctx.clamp_min(0)].permute(1, 2, 0)  # (B, M, J)
    A = A * (ok[..., None] & ~own[:, None, :])
    b = batch.y[:, : batch.n_ctx] * ok
    w = nnls(A.double(), b.double()).float()
    fallback = (~own).float()  # no context, or nothing fitted: the mean of the basis
    w = torch.where(w.sum(1, keepdim=True) > 0, w, fallback)
    return (w / w.sum(1, keepdim=True)) @ basis.y


def ridge(points: Points, basis: Basis, batch: Batch, alpha: float = 1.0) -> torch.Tensor:
    prior = mean(points, basis, batch)  # (B, P)
    z = F.normalize(points.x, dim=-1)  # (P, d)
    ctx = batch.points[:, : batch.n_ctx]
    ok = (ctx >= 0).float()
    zc = z[ctx.clamp_min(0)] * ok[..., None]  # (B, M, d)
    residual = (batch.y[:, : batch.n_ctx] - prior.gather(1, ctx.clamp_min(0))) * ok
    K = zc @ zc.transpose(1, 2) + alpha * torch.eye(zc.shape[1], device=z.device)
    coef = torch.linalg.solve(K, residual[..., None])  # (B, M, 1)
    correction = torch.einsum("pd,bmd,bm->bp", z, zc, coef.squeeze(-1))
    p = (prior + correction).clamp_min(1e-4)
    return per_question_normalise(p, points.point_question)


BASELINES = {"uniform": uniform, "mean": mean, "mixture": mixture, "ridge": ridge}
