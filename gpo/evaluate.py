"""Few-shot evaluation: k context questions per task (a group or a respondent), every other question a target.

Every method (GPO and each baseline) sees the same episodes: for each group, `draws`
random context sets per k, drawn from a generator seeded by the eval seed. A method maps
an episode (gpo/tasks.py: the context's shares, never the targets') to (B, P)
probabilities; scores are per (group, question) alignments (metrics.py) averaged over the
target questions, then over draws. The labels stay here, for building episodes and scoring.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from gpo.data.basis import Basis
from gpo.metrics import question_scores
from gpo.progress import progress
from gpo.tasks import Method, Points, Questions, kind_of, make_episode, sample_questions

log = logging.getLogger(__name__)


@functools.cache
def warn_once(message: str) -> None:
    """Validation evaluates the same episodes for every candidate: say each thing once."""
    log.warning(message)


def episodes(points: Points, tasks: list[int], k: int, draws: int, seed: int, max_targets: int = 0,
             shared: bool = False) -> tuple[torch.Tensor, Questions]:
    """Rows = tasks x draws; each row's context is k random questions, its targets the rest
    (or the next `max_targets` of them), of those it may be scored on (Points.scored; the
    context then comes from the others). `shared`: one question order per draw for every group
    (eval.contexts "shared", the reference code's protocol)."""
    generator = torch.Generator(device=points.device).manual_seed(seed * 1_000_003 + k)
    rows = torch.as_tensor(tasks, device=points.device).repeat_interleave(draws)
    scored = None if points.scored is None else points.scored[rows]
    return rows, sample_questions(points.available[rows], k, max_targets or None, generator, scored, draws if shared else 0)


def predict(method: Method, points: Points, labels: torch.Tensor, basis: Basis, rows: torch.Tensor, q: Questions) -> torch.Tensor:
    """(B, P) a method's predictions for rows `rows` with questions `q`: it reads the labels
    of the context questions only, through the episode."""
    return method(points, basis, make_episode(points, labels, rows, q))


def predictions(method: Method, points: Points, labels: torch.Tensor, basis: Basis, rows: torch.Tensor, q: Questions,
                chunk: int = 32) -> torch.Tensor:
    """(B, P) `predict` over many rows, `chunk` rows at a time (bounded memory)."""
    return torch.cat([predict(method, points, labels, basis, rows[s:s + chunk], q.rows(slice(s, s + chunk)))
                      for s in range(0, rows.shape[0], chunk)])


class Truth:
    """The answers at each row's target questions (rows `rows`, questions `q`), gathered once
    for every method scored on them."""

    def __init__(self, points: Points, labels: torch.Tensor, rows: torch.Tensor, q: Questions):
        B, T = q.tar.shape
        at = points.question_points[q.tar]  # (B, T, O) the target questions' points
        self.mask = ((at >= 0) & q.tar_ok[..., None]).reshape(B * T, -1)
        self.ids = at.clamp_min(0).reshape(B, -1)
        self.true = (labels[rows[:, None], self.ids].nan_to_num(0.0).reshape(B * T, -1) * self.mask).double()
        self.ordinal, self.is_ordinal = points.ordinal[q.tar].reshape(B * T, -1), points.is_ordinal[q.tar].reshape(-1)
        self.ok, self.n = q.tar_ok, q.tar_ok.sum(1).clamp_min(1)

    def scores(self, p: torch.Tensor, metrics: tuple[str, ...]) -> torch.Tensor:
        """(B, metrics) each metric's mean over each row's target questions of predictions p (B, P)
        (metrics.py: alignment for distributions; accuracy and log loss for one-hot answers)."""
        pred = (p.gather(1, self.ids).reshape(self.true.shape) * self.mask).double()
        per_question = [question_scores(m, pred, self.true, self.ordinal, self.mask, self.is_ordinal).reshape(self.ok.shape)
                        for m in metrics]
        return torch.stack([torch.where(self.ok, v, 0.0).sum(1) / self.n for v in per_question], -1)


def score(points: Points, labels: torch.Tensor, p: torch.Tensor, rows: torch.Tensor, q: Questions,
          metric: str = "alignment") -> torch.Tensor:
    """Mean of a metric over each row's target questions: (B, P) probabilities -> (B,)."""
    return Truth(points, labels, rows, q).scores(p, (metric,))[:, 0]


@dataclass
class Work:
    """Every method's scores on the episodes of `plan` ([(k, rows, questions)], rows = tasks x
    draws), for any run of consecutive tasks: a shard, evaluated here or in a Ray task."""

    methods: dict[str, Method]
    points: Points
    labels: torch.Tensor
    basis: Basis
    plan: list[tuple[int, torch.Tensor, Questions]]
    draws: int
    metrics: tuple[str, ...]
    chunk: int

    def __post_init__(self):
        self.same = [same_draws(q, self.draws) for _, _, q in self.plan]

    def __call__(self, start: int, stop: int, step=None) -> np.ndarray:
        """(methods, k's, rows of tasks start..stop, metrics) scores, `chunk` rows at a time,
        every method on each chunk's episode; `step(n)` is called with the tasks x methods done.
        Where every draw of every task drew the same questions (k = 0 with all the rest as
        targets), one draw is scored: every method is deterministic."""
        out = np.empty((len(self.methods), len(self.plan), (stop - start) * self.draws, len(self.metrics)))
        for i, (_, rows, q) in enumerate(self.plan):
            once = self.draws if self.same[i] else 1
            per_task = self.draws // once  # rows scored per task
            tasks = max(1, self.chunk // per_task)
            for a in range(start, stop, tasks):
                b = min(a + tasks, stop)
                s = slice(a * self.draws, b * self.draws, once)
                episode = make_episode(self.points, self.labels, rows[s], q.rows(s))
                truth = Truth(self.points, self.labels, rows[s], q.rows(s))
                for j, method in enumerate(self.methods.values()):
                    values = truth.scores(method(self.points, self.basis, episode), self.metrics)
                    out[j, i, (a - start) * self.draws:(b - start) * self.draws] = values.repeat_interleave(once, 0).numpy(force=True)
                if step:
                    step((b - a) * len(self.methods))
        return out


def same_draws(q: Questions, draws: int) -> bool:
    """Whether each task's draws all drew the same context and the same target questions."""
    def sets(ids, ok):
        return torch.where(ok, ids, -1).sort(1).values.reshape(ids.shape[0] // draws, draws, ids.shape[1])
    return draws > 1 and q.ctx.shape[0] > 0 and all(bool((t == t[:, :1]).all()) for t in (sets(q.ctx, q.ctx_ok), sets(q.tar, q.tar_ok)))


def in_process(work: Work, n_tasks: int, bar) -> np.ndarray:
    return work(0, n_tasks, bar.update)


def evaluate(methods: dict[str, Method], points: Points, labels: torch.Tensor, basis: Basis, tasks: list[int],
             task_names: list[str], ks: list[int], draws: int, seed: int, chunk: int = 32, max_targets: int = 0,
             desc: str | None = None, metrics: tuple[str, ...] = ("alignment",), shared: bool = False,
             runner=in_process) -> pd.DataFrame:
    """One row per (method, k, group): each of `metrics` averaged over the draws, the first also
    as `score` (what choices and reports read), its spread over the draws, the mean number of
    targets. Every episode is drawn here, then `runner` scores them (gpo/shards.py: in shards,
    over Ray, kept in the run folder as they finish; default: here, at once). `desc` names a
    progress bar over tasks x methods x k's (none when None: validation runs inside training)."""
    plan = [(k, *episodes(points, tasks, k, draws, seed, max_targets, shared)) for k in ks]
    names = pd.Series(task_names)[tasks].to_numpy()
    with progress(total=len(tasks) * len(ks) * len(methods), desc=desc, unit="task x method x k",
                  disable=desc is None) as bar:
        values = runner(Work(methods, points, labels, basis, plan, draws, tuple(metrics), chunk), len(tasks), bar)
    values = torch.from_numpy(values).reshape(len(methods), len(ks), len(tasks), draws, len(metrics))
    frames = []
    for i, (k, rows, q) in enumerate(plan):
        n_targets = q.tar_ok.sum(1).float().reshape(len(tasks), draws).mean(1)
        scored = (n_targets > 0).numpy(force=True)
        short = names[~scored]  # every question it answered is context
        if len(short):
            warn_once(f"k={k}: {', '.join(short[:10])}{' ...' if len(short) > 10 else ''} answered at most {k} questions, "
                      "so nothing is left to predict: left out at this k")
        for j, name in enumerate(methods):
            primary = values[j, i, ..., 0]
            frame = pd.DataFrame({"method": name, **dataclasses.asdict(kind_of(name, methods[name])), "k": k, "task": names,
                                  "score": primary.mean(1).numpy(),
                                  "metric": metrics[0], **{m: values[j, i, ..., n].mean(1).numpy() for n, m in enumerate(metrics)},
                                  "score_sd_draws": (primary.std(1) if draws > 1 else torch.zeros(len(tasks))).numpy(),
                                  "n_targets": n_targets.numpy(force=True), "draws": draws,
                                  "train_s": getattr(methods[name], "train_seconds", None)})
            frames.append(frame[scored])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def mean_and_worst(results: pd.DataFrame, by=("method", "k"), aggregate: str = "tasks") -> pd.DataFrame:
    """Per method and k: the mean score over groups and the worst group's, or over respondents
    (rows with a survey `weight`) the mean, the survey-weighted mean and the mean of the worst
    decile of respondents. `aggregate` "pairs": the mean is over (group, question) pairs, each
    group's mean weighted by its number of targets (the reference code's pooled mean)."""
    grouped = results.groupby(list(by))["score"]
    out = pd.DataFrame({"mean": grouped.mean(), "worst": grouped.min(), "groups": grouped.size()})
    if aggregate == "pairs":
        pairs = results.assign(total=results["score"] * results["n_targets"]).groupby(list(by))
        out["mean"] = pairs["total"].sum() / pairs["n_targets"].sum()
    if "weight" in results:
        worst_decile = lambda s: s.nsmallest(max(1, len(s) // 10)).mean()  # noqa: E731
        weighted = results.assign(ws=results["score"] * results["weight"]).groupby(list(by))
        out = out.assign(worst=grouped.agg(worst_decile), weighted=weighted["ws"].sum() / weighted["weight"].sum())
    return out.reset_index()
