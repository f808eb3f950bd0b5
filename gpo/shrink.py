"""Shrinking a context-reading method toward its reference (the no-context mean prior, or a
residual GPO's own prior): (1 - w) * method + w * reference, a mixture of the two predictions.

Choices of w, combined by taking the most shrunk one:
- per k, on validation groups (gpo/selection.py): what reading the context is worth on
  average over the groups settings are chosen on (for GPO, at least what its training groups
  choose: `gpo_choices`);
- per task, from the task's own context, by leave-one-out: each context question is predicted
  from the others, by the method and by the reference, and w is the most shrunk weight of
  SHRINK whose held-out score is within `se` standard errors of the best
  (eval.shrink.per_task_se). A group unlike the validation groups (another country, another survey)
  so decides from its own answers whether its context is worth reading. With fewer than two
  context questions nothing can be held out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gpo.data.basis import Basis
from gpo.metrics import question_scores
from gpo.ops import compact
from gpo.tasks import Episode, Method, Points

# Weights of the reference; w = 1 ignores the context.
SHRINK = (0.0, 0.25, 0.5, 0.75, 1.0)


def question_slots(points: Points, episode: Episode) -> torch.Tensor:
    """(B, M) the context question (0 .. k-1) of each context point, -1 on padding. Context
    points come packed question by question (tasks.question_tokens)."""
    valid = episode.ctx >= 0
    question = torch.where(valid, points.point_question[episode.ctx.clamp_min(0)], -1)
    starts = valid & torch.cat([torch.ones_like(valid[:, :1]), question[:, 1:] != question[:, :-1]], 1)
    return torch.where(valid, starts.cumsum(1) - 1, -1)


def leave_one_out(points: Points, episode: Episode, holdout: int = 0) -> tuple[Episode, torch.Tensor, torch.Tensor]:
    """Row b * h + j reads row b's context without its j-th question and predicts that question,
    for the first h = min(k, holdout) context questions (every one when holdout is 0; context
    questions come in random order, so the first h are a random sample). Returns those B * h
    episodes, the held-out shares at their targets (B * h, T) and which of the B * h rows hold
    a question (B, h): a row may have fewer than k context questions."""
    k = episode.k
    h = min(k, holdout) if holdout else k
    slot = question_slots(points, episode).repeat_interleave(h, 0)
    held_slot = torch.arange(h, device=slot.device).repeat(episode.ctx.shape[0])[:, None]
    ctx, ctx_y = episode.ctx.repeat_interleave(h, 0), episode.ctx_y.repeat_interleave(h, 0)

    def gather(keep):
        order, valid = compact(keep)
        return torch.where(valid, ctx.gather(1, order), -1), torch.where(valid, ctx_y.gather(1, order), 0.0), valid

    rest, rest_y, _ = gather((slot >= 0) & (slot != held_slot))
    held, held_y, held_ok = gather(slot == held_slot)
    loo = Episode(episode.tasks.repeat_interleave(h), rest, rest_y, held, torch.where(held_ok, 0, -1), k - 1)
    return loo, held_y, held_ok.any(1).reshape(-1, h)


def held_out_score(points: Points, p: torch.Tensor, loo: Episode, held_y: torch.Tensor, metric: str) -> torch.Tensor:
    """(B * k,) the metric (higher is better) of each leave-one-out row's prediction p (B * k, P)
    against its held-out question's shares (0 where the row holds none)."""
    question = points.point_question[loo.tar[:, 0].clamp_min(0)]
    options = points.question_points[question]  # (n, O)
    mask = options >= 0
    spare = p.shape[1]  # padding writes to a spare last column
    true = torch.zeros(p.shape[0], spare + 1, dtype=p.dtype, device=p.device)
    true = true.scatter(1, torch.where(loo.tar >= 0, loo.tar, spare), held_y)[:, :-1]
    pick = lambda v: v.gather(1, options.clamp_min(0)).double() * mask  # noqa: E731
    return question_scores(metric, pick(p), pick(true), points.ordinal[question], mask, points.is_ordinal[question]).nan_to_num(0.0)


def most_shrunk_within_se(scores: torch.Tensor, ok: torch.Tensor, se: float) -> torch.Tensor:
    """Per row, the index of the largest weight (SHRINK order) whose mean score over the row's
    held-out questions is within `se` standard errors of the best one's (the standard error of
    their paired differences). scores: (B, k, W); ok: (B, k) -> (B,)."""
    okf = ok[..., None].to(scores.dtype)
    n = okf.sum(1)  # (B, 1)
    best = ((scores * okf).sum(1) / n.clamp_min(1)).argmax(1)
    gap = scores.gather(2, best[:, None, None].expand(-1, scores.shape[1], 1)) - scores  # (B, k, W), >= 0 on average
    mean = (gap * okf).sum(1) / n.clamp_min(1)
    var = ((gap - mean[:, None]).square() * okf).sum(1) / (n - 1).clamp_min(1)
    close = mean <= se * (var / n.clamp_min(1)).sqrt() + 1e-12  # rounding-level gaps are ties
    return (close * torch.arange(scores.shape[2], device=scores.device)).argmax(1)


def held_out_scores(method: Method, reference: Method, points: Points, basis: Basis, episode: Episode,
                    chunk: int = 32, metric: str = "alignment", holdout: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Each task's leave-one-out evidence: the held-out metric of every SHRINK mix of method
    and reference, (B, h, W), and which held-out rows hold a question, (B, h) (`leave_one_out`)."""
    loo, held_y, ok = leave_one_out(points, episode, holdout)
    scores = []
    for s in range(0, loo.tasks.shape[0], chunk):  # k times the rows: bounded memory
        part = loo.rows(slice(s, s + chunk))
        p, r = method(points, basis, part), reference(points, basis, part)
        scores.append(torch.stack([held_out_score(points, (1 - w) * p + w * r, part, held_y[s:s + chunk], metric)
                                   for w in SHRINK], -1))
    return torch.cat(scores).reshape(*ok.shape, -1), ok


def evidence_weights(scores: torch.Tensor, ok: torch.Tensor, se: float) -> torch.Tensor:
    """(B,) the weight of the reference that each task's leave-one-out evidence (held_out_scores)
    asks for; rows with fewer than two held-out questions get 0 (no evidence either way)."""
    chosen = torch.tensor(SHRINK, device=scores.device)[most_shrunk_within_se(scores, ok, se)]
    return torch.where(ok.sum(1) >= 2, chosen, 0.0)


def context_weights(method: Method, reference: Method, points: Points, basis: Basis, episode: Episode,
                    rule: PerTask) -> torch.Tensor:
    """(B,) each task's weight of the reference, chosen by leave-one-out on its context."""
    if episode.k < 2:
        return torch.zeros(episode.tasks.shape[0], device=points.device)
    return evidence_weights(*held_out_scores(method, reference, points, basis, episode, rule.chunk, rule.metric,
                                             rule.holdout), rule.se)


@dataclass(frozen=True)
class PerTask:
    """The per-task rule: its tolerance in standard errors, the metric it judges by (higher is
    better), how many context questions it holds out at most (0: all), and how many
    leave-one-out rows a method predicts at once."""

    se: float = 0.0
    metric: str = "alignment"
    holdout: int = 0
    chunk: int = 32


def shrunk(method: Method, reference: Method, weight: float, per_task: PerTask | None = None) -> Method:
    """The method shrunk toward its reference by `weight` (chosen per k on validation groups)
    or, where the task's own context asks for more, by its leave-one-out weight (`per_task`;
    None: no per-task shrink)."""
    if weight == 1:
        return reference
    if weight == 0 and per_task is None:
        return method

    def predict(points: Points, basis: Basis, episode: Episode) -> torch.Tensor:
        w = torch.full((episode.tasks.shape[0],), float(weight), device=points.device)
        if per_task is not None:
            w = torch.maximum(w, context_weights(method, reference, points, basis, episode, per_task))
        w = w[:, None]
        return (1 - w) * method(points, basis, episode) + w * reference(points, basis, episode)
    return predict
