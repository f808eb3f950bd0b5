"""Choosing each method's settings per context size k, on groups that are never test groups.

A `Choice` is what was chosen for one k: a candidate's hyperparameters and the weight of the
reference it is shrunk toward (gpo/shrink.py); a method's choices are a `PerK` of them, and the
method built from them a `PerK` of methods. Baselines train nothing, so the training
groups (each predicted from the basis without itself, as a test group is) choose with the
validation groups (`Prepared.choosers`; respondents: the validation respondents alone, as a
low-rank model is fit to the training respondents); GPO was fit to its training tasks, so the
validation tasks choose its weight, floored by what its training tasks choose
(`ShrinkPolicy.training_floor`).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Generic, TypeVar

import torch

from gpo.baselines import REGISTRY, baseline_method
from gpo.config import ExperimentConfig
from gpo.data.basis import Basis
from gpo.errors import ConfigError
from gpo.evaluate import episodes, evaluate, predictions, score
from gpo.inputs import Prepared
from gpo.progress import progress
from gpo.shrink import SHRINK, PerTask, shrunk
from gpo.tasks import Episode, Method, Points

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Choice:
    params: dict = field(default_factory=dict)  # the candidate's hyperparameters ({} for GPO)
    shrink: float = 0.0  # weight of the reference
    score: float = math.nan  # mean alignment on the groups that chose it


T = TypeVar("T")


class PerK(Generic[T]):
    """One entry per context size k; a k without its own entry takes the nearest one (the smaller
    on a tie). A PerK of methods is itself a method: each episode is predicted by its k's entry."""

    def __init__(self, table: dict[int, T]):
        self.table = dict(sorted(table.items()))

    def __getitem__(self, k: int) -> T:
        return self.table[min(self.table, key=lambda c: (abs(c - k), c))]

    def __contains__(self, k: int) -> bool:
        return k in self.table

    def __eq__(self, other) -> bool:
        return isinstance(other, PerK) and self.table == other.table

    def __repr__(self) -> str:
        return f"PerK({self.table})"

    def items(self):
        return self.table.items()

    def values(self):
        return self.table.values()

    def map(self, fn: Callable[[T], object]) -> PerK:
        return PerK({k: fn(v) for k, v in self.table.items()})

    def __call__(self, points: Points, basis: Basis, episode: Episode) -> torch.Tensor:
        return self[episode.k](points, basis, episode)


def stored(choices: PerK[Choice]) -> dict:
    """Choices as a checkpoint keeps them: {k: Choice fields}."""
    return {k: dataclasses.asdict(c) for k, c in choices.items()}


def restored(table: dict) -> PerK[Choice]:
    """Choices from a checkpoint (`stored`)."""
    return PerK({int(k): Choice(**c) for k, c in table.items()})


def context_sizes(cfg: ExperimentConfig) -> list[int]:
    """The k at which settings are chosen: every evaluated k and the validation k of training."""
    return sorted({*cfg.eval.ks, cfg.train.val_k})


def standard_error(differences: torch.Tensor) -> float:
    """Standard error of the mean of paired per-group differences (0 for a single group)."""
    n = differences.numel()
    return float(differences.std() / n**0.5) if n > 1 else 0.0


def select(prep: Prepared, cfg: ExperimentConfig, candidates: list[tuple[dict, Method]], reference: Method,
           label: str, groups: list[str], ks: list[int] | None = None, weights: tuple[float, ...] | None = None
           ) -> PerK[Choice]:
    """For every k of `ks` (default: context_sizes), a candidate and a shrink weight (`weights`,
    default SHRINK, or 0 only when shrinking is off), scored by the mean of the run's metric on
    `groups`. The choice is the most shrunk setting within one standard error (over the groups)
    of the best one: a few groups cannot tell settings that close apart, and shrinking is the
    safer side. Weight 1 (the reference alone) is always a choice, so on `groups` a shrunk
    method never scores clearly below its reference."""
    points, labels, basis, rows_of = prep.points, prep.labels, prep.basis, prep.index(groups)
    weights = weights or (SHRINK if cfg.eval.shrink.enabled else (0.0,))
    ks = ks or context_sizes(cfg)
    chosen = {}
    with progress(total=len(ks) * len(candidates), desc=f"choose {label}", unit="setting") as bar:
        for k in ks:
            rows, q = episodes(points, rows_of, k, cfg.eval.draws, cfg.eval.seed + 1, shared=cfg.eval.contexts == "shared")
            scored = q.tar_ok.reshape(len(rows_of), -1).any(-1)  # groups with something left to predict at this k
            reference_p = predictions(reference, points, labels, basis, rows, q, prep.chunk)
            options = []  # (params, weight, per-group scores)
            for params, method in candidates:
                p = predictions(method, points, labels, basis, rows, q, prep.chunk)
                for w in weights:
                    mixed = (1 - w) * p + w * reference_p
                    per_group = score(points, labels, mixed, rows, q, prep.metric).reshape(len(rows_of), -1).mean(1)
                    options.append((params, w, per_group[scored].double()))
                bar.update(1)
            if scored.any():
                best = max(options, key=lambda o: o[2].mean())
                close = [o for o in options if o[2].mean() >= best[2].mean() - standard_error(best[2] - o[2])]
                params, w, per_group = max(close, key=lambda o: (o[1], o[2].mean()))
                chosen[k] = Choice(params, w, float(per_group.mean()))
    if not chosen:
        raise ConfigError(f"eval.ks: no group to choose on has anything left to predict at any of {ks}")
    log.info("%s, chosen on %d %ss by %s: %s", label, len(groups), prep.unit, prep.metric,
             "; ".join(f"k={k}: {describe(c)}" for k, c in chosen.items()))
    return PerK(chosen)


def describe(choice: Choice) -> str:
    params = ", ".join(f"{p}={v}" for p, v in choice.params.items())
    return f"{params}{' ' if params else ''}{choice.shrink:.0%} reference ({choice.score:.4f})"


def candidates(name: str, basis) -> list[dict]:
    """Every setting of a baseline's grid (gpo/registry.py; a callable grid is made from the basis)."""
    grid = REGISTRY[name].grid
    grid = grid(basis) if callable(grid) else grid
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())] or [{}]


def choose(prep: Prepared, cfg: ExperimentConfig, name: str) -> PerK[Choice]:
    """A baseline's settings per k, chosen on `prep.choosers` (never test groups): its
    hyperparameters and, unless it ignores the context, its shrink toward the mean prior. A
    baseline that ignores the context has one setting for every k, chosen on all of the
    choosers' answers (k = 0), and nothing to shrink."""
    options = candidates(name, prep.basis)
    if not REGISTRY[name].reads_context:
        params = options[0] if len(options) == 1 else select(
            prep, cfg, [(c, baseline_method(name, **c)) for c in options], baseline_method("mean"), name, prep.choosers,
            ks=[0], weights=(0.0,))[0].params
        return PerK({k: Choice(params) for k in context_sizes(cfg)})
    return select(prep, cfg, [(c, baseline_method(name, **c)) for c in options], baseline_method("mean"), name,
                  prep.choosers)


def baseline(name: str, choices: PerK[Choice], rule: PerTask | None = None) -> Method:
    """A baseline with its per-k choices, shrunk more where a task's own context asks for it
    (gpo/shrink.py; `rule` None: not)."""
    rule = rule if REGISTRY[name].reads_context else None
    return choices.map(lambda c: shrunk(baseline_method(name, **c.params), baseline_method("mean"), c.shrink, rule))


def targets_unseen(prep: Prepared) -> bool:
    """Whether evaluated groups are scored on questions no training group answered (the
    new-questions protocol). Their context then comes from questions the training groups did
    answer, where the basis holds each training group exactly: a task's leave-one-out on that
    context, and the training groups' own choice, judge another case than its targets, and
    only the validation groups, scored on their own new questions, see the case they decide for."""
    return prep.points.scored is not None


def per_task(prep: Prepared, cfg: ExperimentConfig) -> PerTask | None:
    """The per-task shrink rule of a run, None when tasks are not shrunk (or `targets_unseen`)."""
    se = cfg.eval.shrink.task_se()
    if se is None or targets_unseen(prep):
        return None
    return PerTask(se, prep.metric, cfg.eval.shrink.per_task_holdout, prep.chunk)


def gpo_choices(prep: Prepared, cfg: ExperimentConfig, name: str, method: Method, prior: Method | None) -> PerK[Choice]:
    """Per k, GPO's weight of its reference (a residual GPO's prior, else the no-context mean).

    The weight is chosen on the validation groups, which GPO has not seen. With the policy's
    training floor it is at least the one chosen on GPO's training groups: they flatter GPO
    (it was fit to their answers), so where even they prefer it more shrunk, unseen groups
    will too, and two or three validation groups unlike the test groups cannot argue it out
    of that. Not where the targets are questions the training groups never answered
    (`targets_unseen`)."""
    reference = prior or baseline_method("mean")
    chosen = select(prep, cfg, [({}, method)], reference, name, prep.split.val)
    if cfg.eval.shrink.training_floor and not targets_unseen(prep):
        seen = select(prep, cfg, [({}, method)], reference, f"{name} on its training groups", prep.split.train)
        chosen = PerK({k: dataclasses.replace(c, shrink=max(c.shrink, seen.table[k].shrink if k in seen else 0.0))
                       for k, c in chosen.items()})
    return chosen


def shrink_gpo(prep: Prepared, cfg: ExperimentConfig, name: str, method: Method, prior: Method | None) -> Method:
    """GPO shrunk toward its reference by its per-k choice (`gpo_choices`); GPO itself when
    shrinking is off. A residual GPO is shrunk toward its prior first; then, per task, any
    GPO may be shrunk further toward the mean, as the baselines are: a residual GPO's prior
    can mislead a task as much as GPO itself."""
    policy = cfg.eval.shrink
    if not policy.enabled:
        return method
    mean = baseline_method("mean")
    choices = gpo_choices(prep, cfg, name, method, prior)
    rule = per_task(prep, cfg)
    if prior is None:
        return choices.map(lambda c: shrunk(method, mean, c.shrink, rule))
    return choices.map(lambda c: shrunk(shrunk(method, prior, c.shrink), mean, 0.0, rule))


def validation_score(prep: Prepared, cfg: ExperimentConfig, method: Method) -> float:
    """Mean score on the validation groups at k = train.val_k (fixed episodes)."""
    results = evaluate({"m": method}, prep.points, prep.labels, prep.basis, prep.index(prep.split.val), prep.data.tasks,
                       [cfg.train.val_k], cfg.eval.draws, cfg.eval.seed + 1, metrics=(prep.metric,), chunk=prep.chunk,
                       shared=cfg.eval.contexts == "shared")
    if results.empty:
        raise ConfigError(f"train.val_k: {cfg.train.val_k} context questions leave no validation group anything to predict")
    return float(results["score"].mean())
