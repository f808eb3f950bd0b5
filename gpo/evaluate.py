"""Few-shot evaluation: k context questions per group, every other question a target.

Every method (GPO and each baseline) sees the same episodes: for each group, `draws`
random context sets per k, drawn from a generator seeded by the eval seed. A method maps
an episode (gpo/tasks.py: the context's shares, never the targets') to (B, P)
probabilities; scores are per (group, question) alignments (metrics.py) averaged over the
target questions, then over draws. The labels stay here, for building episodes and scoring.
"""

from __future__ import annotations

import functools
import logging

import pandas as pd
import torch

from gpo.data.basis import Basis
from gpo.metrics import alignment
from gpo.progress import progress
from gpo.tasks import Method, Points, Questions, make_episode, sample_questions

log = logging.getLogger(__name__)


@functools.cache
def warn_once(message: str) -> None:
    """Validation evaluates the same episodes for every candidate: say each thing once."""
    log.warning(message)


def episodes(points: Points, groups: list[int], k: int, draws: int, seed: int, max_targets: int = 0) -> tuple[torch.Tensor, Questions]:
    """Rows = groups x draws; each row's context is k random questions, its targets the rest
    (or the next `max_targets` of them)."""
    generator = torch.Generator(device=points.device).manual_seed(seed * 1_000_003 + k)
    rows = torch.as_tensor(groups, device=points.device).repeat_interleave(draws)
    return rows, sample_questions(points.available[rows], k, max_targets or None, generator)


def predict(method: Method, points: Points, labels: torch.Tensor, basis: Basis, rows: torch.Tensor, q: Questions) -> torch.Tensor:
    """(B, P) a method's predictions for rows `rows` with questions `q`: it reads the labels
    of the context questions only, through the episode."""
    return method(points, basis, make_episode(points, labels, rows, q))


def predictions(method: Method, points: Points, labels: torch.Tensor, basis: Basis, rows: torch.Tensor, q: Questions,
                chunk: int = 32) -> torch.Tensor:
    """(B, P) `predict` over many rows, `chunk` rows at a time (bounded memory)."""
    return torch.cat([predict(method, points, labels, basis, rows[s:s + chunk], q.rows(slice(s, s + chunk)))
                      for s in range(0, rows.shape[0], chunk)])


def score(points: Points, labels: torch.Tensor, p: torch.Tensor, rows: torch.Tensor, q: Questions) -> torch.Tensor:
    """Mean alignment over each row's target questions: (B, P) probabilities -> (B,)."""
    B, Q = rows.shape[0], points.question_points.shape[0]
    target = torch.zeros(B, Q + 1, dtype=torch.bool, device=p.device)
    target = target.scatter(1, torch.where(q.tar_ok, q.tar, Q), True)[:, :Q]
    qp = points.question_points
    mask = (qp >= 0).expand(B, -1, -1)
    pred = p[:, qp.clamp_min(0)] * mask  # (B, Q, O)
    true = labels[rows][:, qp.clamp_min(0)].nan_to_num(0.0) * mask
    ordinal = points.ordinal.expand(B, -1, -1)
    per_question = alignment(pred.reshape(B * Q, -1).double(), true.reshape(B * Q, -1).double(),
                             ordinal.reshape(B * Q, -1), mask.reshape(B * Q, -1),
                             points.is_ordinal.repeat(B)).reshape(B, Q)
    return torch.where(target, per_question, 0.0).sum(1) / target.sum(1).clamp_min(1)


def evaluate(methods: dict[str, Method], points: Points, labels: torch.Tensor, basis: Basis, groups: list[int],
             group_names: list[str], ks: list[int], draws: int, seed: int, chunk: int = 32, max_targets: int = 0,
             desc: str | None = None) -> pd.DataFrame:
    """One row per (method, k, group): alignment averaged over the draws. `desc` names a
    progress bar over (method, k) pairs (none when None: validation runs inside training)."""
    records = []
    bar = progress(total=len(ks) * len(methods), desc=desc, unit="method x k", disable=desc is None)
    for k in ks:
        rows, q = episodes(points, groups, k, draws, seed, max_targets)
        n_targets = q.tar_ok.sum(1).float().reshape(len(groups), draws).mean(1).tolist()
        short = [group_names[g] for g, n in zip(groups, n_targets) if n == 0]  # every question it answered is context
        if short:
            warn_once(f"k={k}: {', '.join(short)} answered at most {k} questions, so nothing is left to predict: left out at this k")
        for name, method in methods.items():
            bar.set_postfix(method=name, k=k)
            p = predictions(method, points, labels, basis, rows, q, chunk)
            per_group = score(points, labels, p, rows, q).reshape(len(groups), draws)
            spread = per_group.std(1) if draws > 1 else torch.zeros(len(groups))
            for g, value, sd, n in zip(groups, per_group.mean(1).tolist(), spread.tolist(), n_targets):
                if n == 0:
                    continue
                records.append({"method": name, "k": k, "group": group_names[g], "alignment": value,
                                "alignment_sd_draws": sd, "n_targets": n, "draws": draws,
                                "train_s": getattr(method, "train_seconds", None)})
            bar.update(1)
    bar.close()
    return pd.DataFrame.from_records(records)


def summarise(results: pd.DataFrame, by=("method", "k")) -> pd.DataFrame:
    """Mean and worst group per method and k."""
    grouped = results.groupby(list(by))["alignment"]
    return pd.DataFrame({"mean": grouped.mean(), "worst": grouped.min(), "groups": grouped.size()}).reset_index()
