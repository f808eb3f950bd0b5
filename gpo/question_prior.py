"""Priors on questions no training group answered: each training group's shares predicted from
the option embeddings, so that every method that combines the training groups' answers (the
mean, the pools, the mixture, the kernel, a residual GPO's prior) has something better than the
uniform distribution to combine there, when the embeddings predict that.

A ridge regression from the (centred, unit-length) option embedding to the group's centred
log-shares, softmaxed within each question. Its strength is chosen by cross-validation over
questions on the training groups' own answers (the folds hold questions out, which is the case
it is for); the uniform distribution, the infinitely strong ridge, is always a candidate and is
kept unless a regression predicts held-out questions better.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gpo.metrics import alignment
from gpo.ops import centred_log, segment_softmax
from gpo.tasks import Points

log = logging.getLogger(__name__)

ALPHAS = (0.1, 1.0, 10.0, 100.0)
EPS = 0.003  # as the log-linear pool's log-shares


@dataclass(frozen=True)
class QuestionPrior:
    shares: torch.Tensor  # (J, P) each basis group's predicted shares of every point
    alpha: float | None  # the chosen ridge strength; None: uniform
    scores: dict  # held-out alignment per candidate ("uniform", or the alpha)

    def describe(self) -> str:
        shown = ", ".join(f"{k}: {v:.4f}" for k, v in self.scores.items())
        if self.alpha is None:
            return f"the uniform distribution (no ridge from the embeddings predicted held-out questions better: {shown})"
        return f"a ridge from the option embeddings (alpha {self.alpha:g}, chosen on held-out questions: {shown})"


def ridge_predict(z: torch.Tensor, targets: torch.Tensor, known: torch.Tensor, alpha: float) -> torch.Tensor:
    """(J, P) each group's ridge fit of `targets` on the features z (P, d) over its known points,
    predicted at every point: in the primal (d, d) or the dual (n, n) form, whichever is smaller."""
    out = []
    for t, k in zip(targets, known):  # a few groups, each one solve
        zk, tk = z[k], t[k]
        if zk.shape[0] == 0:
            out.append(torch.zeros_like(t))
        elif z.shape[1] <= zk.shape[0]:
            eye = torch.eye(z.shape[1], dtype=z.dtype, device=z.device)
            out.append(z @ torch.linalg.solve(zk.T @ zk + alpha * eye, zk.T @ tk))
        else:
            eye = torch.eye(zk.shape[0], dtype=z.dtype, device=z.device)
            out.append(z @ (zk.T @ torch.linalg.solve(zk @ zk.T + alpha * eye, tk)))
    return torch.stack(out)


def held_out_alignment(points: Points, y: torch.Tensor, known: torch.Tensor, logits: torch.Tensor, held: torch.Tensor) -> float:
    """Mean alignment, over groups and the held-out questions they answered, of softmax(logits) with y."""
    J = y.shape[0]
    p = segment_softmax(logits, points.point_question.expand(J, -1))
    qp = points.question_points
    mask = qp >= 0
    answered = known[:, qp[:, 0]] & held[None]  # (J, Q)
    pick = lambda v: (v[:, qp.clamp_min(0)] * mask).reshape(-1, qp.shape[1]).double()  # noqa: E731
    values = alignment(pick(p), pick(y.nan_to_num(0.0)), points.ordinal.repeat(J, 1), mask.repeat(J, 1),
                       points.is_ordinal.repeat(J)).reshape(J, -1)
    return float(values[answered].mean()) if answered.any() else float("nan")


def fit_question_prior(points: Points, y: torch.Tensor, folds: int = 5, seed: int = 0) -> QuestionPrior:
    """The basis groups' (y: (J, P) shares, NaN where not answered) predicted shares of every
    point, from the ridge strength (or uniform) with the best held-out alignment."""
    z = F.normalize(points.x - points.x.mean(0), dim=-1).double()
    known = ~y.isnan()
    targets = centred_log(y.nan_to_num(0.0).double(), points.point_question, EPS)
    n_q = points.question_points.shape[0]
    fold = torch.randperm(n_q, generator=torch.Generator().manual_seed(seed)).to(y.device) % folds
    scores = {"uniform": [], **{a: [] for a in ALPHAS}}
    for f in range(folds):
        held = fold == f
        train = known & ~held[points.point_question][None]
        for candidate in scores:
            logits = torch.zeros_like(targets) if candidate == "uniform" else ridge_predict(z, targets, train, candidate)
            scores[candidate].append(held_out_alignment(points, y, known, logits, held))
    means = {k: torch.tensor(v).nanmean().item() for k, v in scores.items()}
    best = max(means, key=lambda k: (means[k], k == "uniform"))
    if best == "uniform" or not means[best] > means["uniform"]:
        return QuestionPrior(points.uniform().expand(y.shape[0], -1), None, means)
    logits = ridge_predict(z, targets, known, best)
    return QuestionPrior(segment_softmax(logits, points.point_question.expand(y.shape[0], -1)).float(), best, means)
