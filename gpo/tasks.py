"""Few-shot tasks: sample context and target questions per task, and gather their points.

A method reads an `Episode`: each row's context points with the group's shares, and its
target points without them. The shares (`labels`) stay with whoever samples (training,
evaluation), so no method can read a target's share or another group's answers.
Everything is batched over tasks: question choices are argsorts of random keys, points are
gathered through the (Q, O) question-to-point table and packed to the front of each row
(ops.compact), so no Python loop runs over points, questions or tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from gpo.data.basis import Basis
from gpo.data.survey import SurveyData
from gpo.ops import compact


@dataclass
class Points:
    """A survey on a device without anyone's shares: embeddings and the index tables."""

    x: torch.Tensor  # (P, d_x) embeddings
    question_points: torch.Tensor  # (Q, O) point ids, -1 pads
    point_question: torch.Tensor  # (P,)
    available: torch.Tensor  # (G, Q) bool: which questions each group answered
    ordinal: torch.Tensor  # (Q, O) ordinal values (NaN pads / unordered)
    is_ordinal: torch.Tensor  # (Q,) bool
    scored: torch.Tensor | None = None  # (G, Q) bool: the questions a group may be scored on (None: any it answered)

    @classmethod
    def build(cls, data: SurveyData, x, device="cpu") -> "Points":
        qp = torch.tensor(data.question_points)  # copies, as below: the arrays may be read-only shared views (Ray)
        ordinal = torch.full(qp.shape, torch.nan, dtype=torch.float64)
        for q, values in enumerate(data.ordinal):
            if values is not None:
                ordinal[q, : len(values)] = torch.tensor(values, dtype=torch.float64)
        return cls(
            x=torch.tensor(x, dtype=torch.float32, device=device),  # a copy: x may be a read-only shared view
            question_points=qp.to(device),
            point_question=torch.tensor(data.point_question, device=device),
            available=torch.tensor(data.available, device=device),
            ordinal=ordinal.to(device),
            is_ordinal=torch.tensor([o is not None for o in data.ordinal], device=device),
            scored=None if data.scored is None else torch.tensor(data.scored, device=device),
        )

    @property
    def device(self):
        return self.x.device

    def uniform(self) -> torch.Tensor:
        """(P,) every option of a question equally likely."""
        n_options = (self.question_points >= 0).sum(1)  # (Q,)
        return 1.0 / n_options[self.point_question].to(torch.float32)


def labels_of(data: SurveyData, device="cpu") -> torch.Tensor:
    """(G, P) every group's shares, NaN where it did not answer: for sampling and scoring only."""
    return torch.tensor(data.y, device=device)


@dataclass
class Questions:
    """Per task (row): context and target question ids, with validity."""

    ctx: torch.Tensor  # (B, n_ctx)
    ctx_ok: torch.Tensor
    tar: torch.Tensor  # (B, n_tar)
    tar_ok: torch.Tensor

    def rows(self, s: slice) -> "Questions":
        return Questions(self.ctx[s], self.ctx_ok[s], self.tar[s], self.tar_ok[s])


def sample_questions(available: torch.Tensor, n_ctx: int, n_tar: int | None, generator: torch.Generator,
                     scored: torch.Tensor | None = None, shared: int = 0) -> Questions:
    """A random order of each row's available questions (B, Q): the first n_ctx are context,
    the next n_tar (None: all the rest) targets. Rows with fewer questions get padding. With
    `scored` (B, Q), questions not scored come first (contexts draw from them) and only scored
    ones are targets. `shared` > 0 draws that many orders only, row r taking order r % shared
    (one order for a whole batch, or one per draw shared by every task), so tasks that answered
    the same questions get the same ones."""
    B, Q = available.shape
    if shared:
        keys = torch.rand((shared, Q), generator=generator, device=available.device)[torch.arange(B, device=available.device) % shared]
    else:
        keys = torch.rand(available.shape, generator=generator, device=available.device)
    if scored is not None:
        keys = torch.where(scored, keys, keys - 2.0)  # unscored questions sort first
    keys = torch.where(available, keys, 2.0)  # unavailable questions sort last
    sorted_keys, order = keys.sort(dim=1)
    ok = sorted_keys < 2.0
    end = available.shape[1] if n_tar is None else n_ctx + n_tar
    tar_ok = ok[:, n_ctx:end] if scored is None else ok[:, n_ctx:end] & scored.gather(1, order[:, n_ctx:end])
    return Questions(order[:, :n_ctx], ok[:, :n_ctx], order[:, n_ctx:end], tar_ok)


@dataclass
class Episode:
    """What a method may read about a batch of few-shot tasks (one row per task)."""

    tasks: torch.Tensor  # (B,) the task (a group or a respondent: its row of the labels) of each row
    ctx: torch.Tensor  # (B, M) point ids of the context questions, -1 pads
    ctx_y: torch.Tensor  # (B, M) the group's shares of them, 0 on padding
    tar: torch.Tensor  # (B, T) point ids of the target questions, -1 pads: no shares
    segment: torch.Tensor  # (B, T) each target's question slot within its row, -1 on padding
    k: int  # context questions asked for (a row may have fewer: a group that answered fewer)

    @property
    def n_ctx(self) -> int:
        return self.ctx.shape[1]

    @property
    def points(self) -> torch.Tensor:
        """(B, M + T) context then target point ids, -1 pads."""
        return torch.cat([self.ctx, self.tar], 1)

    def rows(self, s: slice) -> "Episode":
        return Episode(self.tasks[s], self.ctx[s], self.ctx_y[s], self.tar[s], self.segment[s], self.k)


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


def shares_at(labels: torch.Tensor, tasks: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """(B, N) each row's task's shares at point ids `ids`, 0 on padding."""
    y = labels[tasks[:, None], ids.clamp_min(0)]
    return torch.where(ids >= 0, y.nan_to_num(0.0), 0.0)


def make_episode(points: Points, labels: torch.Tensor, tasks: torch.Tensor, q: Questions) -> Episode:
    """The episode of rows `tasks` with questions `q`: `labels` are read at context points only."""
    ctx, _ = question_tokens(points, q.ctx, q.ctx_ok)
    tar, segment = question_tokens(points, q.tar, q.tar_ok)
    return Episode(tasks, ctx, shares_at(labels, tasks, ctx), tar, segment, q.ctx.shape[1])


# Every evaluated method (GPO, each baseline) maps an episode to (B, P) probabilities: its rows'
# predicted shares of every point, read at the targets.
Method = Callable[[Points, Basis, Episode], torch.Tensor]


@dataclass(frozen=True)
class Kind:
    """What a method is, as its result rows' columns: analysis and sweeps read these, never its name."""

    family: str  # "gpo", "llm", or the baseline's own name
    variant: str = ""  # GPO: its prior and features ("paper": the paper's); an LLM baseline: which one
    shrunk: bool = False  # shrunk toward its no-context reference (gpo/shrink.py)
    ensemble: int = 1  # models whose predictions are averaged


class Labelled:
    """A method with its Kind (a baseline needs none: its kind is its name)."""

    def __init__(self, method: Method, kind: Kind):
        self.method, self.kind = method, kind

    def __call__(self, points: Points, basis: Basis, episode: Episode) -> torch.Tensor:
        return self.method(points, basis, episode)

    @property
    def train_seconds(self):
        return getattr(self.method, "train_seconds", None)


def kind_of(name: str, method: Method) -> Kind:
    return getattr(method, "kind", None) or Kind(name)
