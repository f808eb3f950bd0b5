"""Few-shot tasks: sample context and target questions per group, and gather their points.

Everything is batched over groups: question choices are argsorts of random keys, points
are gathered through the (Q, O) question-to-point table and packed to the front of each
row (ops.compact), so no Python loop runs over points, questions or groups.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gpo.data.survey import SurveyData
from gpo.ops import compact


@dataclass
class Points:
    """A survey on a device: embeddings, shares and the question/point index tables."""

    x: torch.Tensor  # (P, d_x) embeddings
    y: torch.Tensor  # (G, P) shares, NaN where the group lacks the question
    question_points: torch.Tensor  # (Q, O) point ids, -1 pads
    point_question: torch.Tensor  # (P,)
    available: torch.Tensor  # (G, Q) bool
    ordinal: torch.Tensor  # (Q, O) ordinal values (NaN pads / unordered)
    is_ordinal: torch.Tensor  # (Q,) bool

    @classmethod
    def build(cls, data: SurveyData, x, device="cpu") -> "Points":
        qp = torch.as_tensor(data.question_points)
        ordinal = torch.full(qp.shape, torch.nan, dtype=torch.float64)
        for q, values in enumerate(data.ordinal):
            if values is not None:
                ordinal[q, : len(values)] = torch.tensor(values, dtype=torch.float64)
        return cls(
            x=torch.tensor(x, dtype=torch.float32, device=device),  # a copy: x may be a read-only shared view
            y=torch.tensor(data.y, device=device),
            question_points=qp.to(device),
            point_question=torch.as_tensor(data.point_question).to(device),
            available=torch.as_tensor(data.available).to(device),
            ordinal=ordinal.to(device),
            is_ordinal=torch.tensor([o is not None for o in data.ordinal], device=device),
        )

    @property
    def device(self):
        return self.x.device


@dataclass
class Questions:
    """Per task (row): context and target question ids, with validity."""

    ctx: torch.Tensor  # (B, n_ctx)
    ctx_ok: torch.Tensor
    tar: torch.Tensor  # (B, n_tar)
    tar_ok: torch.Tensor


def sample_questions(available: torch.Tensor, n_ctx: int, n_tar: int | None, generator: torch.Generator) -> Questions:
    """A random order of each row's available questions (B, Q): the first n_ctx are context,
    the next n_tar (None: all the rest) targets. Rows with fewer questions get padding."""
    keys = torch.rand(available.shape, generator=generator, device=available.device)
    keys = torch.where(available, keys, 2.0)  # unavailable questions sort last
    sorted_keys, order = keys.sort(dim=1)
    ok = sorted_keys < 2.0
    end = available.shape[1] if n_tar is None else n_ctx + n_tar
    return Questions(order[:, :n_ctx], ok[:, :n_ctx], order[:, n_ctx:end], ok[:, n_ctx:end])


@dataclass
class Batch:
    x: torch.Tensor  # (B, N, d_x), context tokens first
    y: torch.Tensor  # (B, N) shares (0 on padding); the targets' are labels only
    valid: torch.Tensor  # (B, N)
    points: torch.Tensor  # (B, N) point ids, -1 on padding
    segment: torch.Tensor  # (B, N - n_ctx) target question slot, -1 on padding
    n_ctx: int
    groups: torch.Tensor  # (B,) group index per row
    prior: torch.Tensor | None = None  # (B, N) a baseline's probability per token
    basis: torch.Tensor | None = None  # (B, N, J) the training groups' shares per token

    @property
    def y_tar(self):
        return self.y[:, self.n_ctx:]


def question_tokens(points: Points, questions: torch.Tensor, ok: torch.Tensor):
    """Point ids (B, M) of the chosen questions, packed to the front, and each one's slot."""
    B, n = questions.shape
    pts = points.question_points[questions]  # (B, n, O)
    keep = (pts >= 0) & ok[..., None]
    slot = torch.arange(n, device=pts.device)[None, :, None].expand_as(pts)
    order, valid = compact(keep.reshape(B, -1))
    pts = pts.reshape(B, -1).gather(1, order)
    slot = slot.reshape(B, -1).gather(1, order)
    return torch.where(valid, pts, -1), torch.where(valid, slot, -1)


def make_batch(points: Points, groups: torch.Tensor, q: Questions) -> Batch:
    ctx_pts, _ = question_tokens(points, q.ctx, q.ctx_ok)
    tar_pts, segment = question_tokens(points, q.tar, q.tar_ok)
    pts = torch.cat([ctx_pts, tar_pts], 1)
    valid = pts >= 0
    safe = pts.clamp_min(0)
    y = points.y[groups[:, None], safe]
    return Batch(
        x=points.x[safe],
        y=torch.where(valid, y.nan_to_num(0.0), 0.0),
        valid=valid,
        points=pts,
        segment=segment,
        n_ctx=ctx_pts.shape[1],
        groups=groups,
    )
