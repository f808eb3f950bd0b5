"""A run's inputs: the survey, its group split and the embeddings, assembled on a device.

Training, every method's choices and evaluation read the same `Prepared`: label-free points,
every group's shares (which only the samplers and the scorer read) and the training groups'
basis. A study loads the survey and its embeddings once (`load_inputs`) and assembles them
in each trial on whatever device the trial got.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from gpo.config import ExperimentConfig
from gpo.data import load_table
from gpo.data.basis import Basis
from gpo.data.panel import Panel
from gpo.data.respondents import load_responses
from gpo.data.responses import Responses
from gpo.data.schema import BadRows, RowProblem, read_csv
from gpo.data.splits import GroupSplit, split_groups, split_respondents
from gpo.data.survey import SurveyData, group_labels, resolve_groups, respondent_survey, select
from gpo.data.transforms import options_as_letters, with_test_survey
from gpo.device import pick_device
from gpo.embed.survey import embed_survey
from gpo.errors import ConfigError, DataError
from gpo.question_prior import QuestionPrior, fit_question_prior
from gpo.tasks import Points, labels_of

log = logging.getLogger(__name__)

FEW_RESPONDENTS = 30  # fewer training respondents than this get a warning


@dataclass
class Prepared:
    """A run's inputs on its device: the survey, its split, the label-free points, every task's
    shares (for sampling and scoring only) and what the training tasks answered: the basis of
    training groups, or the panel of training respondents (`unit`)."""

    data: SurveyData
    split: GroupSplit
    points: Points
    labels: torch.Tensor  # (G, P)
    basis: Basis | Panel
    unit: str = "group"  # "group" or "respondent"
    question_prior: QuestionPrior | None = None  # where no training group answered, what the basis holds

    @property
    def metrics(self) -> tuple[str, ...]:
        """What evaluation reports; the first (higher is better) is what every choice is made on."""
        return ("alignment",) if self.unit == "group" else ("accuracy", "log_loss", "alignment")

    @property
    def metric(self) -> str:
        return self.metrics[0]

    @property
    def chunk(self) -> int:
        """Tasks a method predicts at once: the group methods read a (tasks, groups, points) basis."""
        return 32 if self.unit == "group" else 512

    @property
    def choosers(self) -> list[str]:
        """The tasks baselines' settings are chosen on: validation and training groups (a training
        group reads the basis without itself), or the validation respondents."""
        return self.split.val + self.split.train if self.unit == "group" else self.split.val

    @cached_property
    def row_of(self) -> dict[str, int]:
        return {g: i for i, g in enumerate(self.data.tasks)}

    def index(self, names: list[str]) -> list[int]:
        return [self.row_of[n] for n in names]


def load_source(cfg: ExperimentConfig) -> tuple[pd.DataFrame, np.ndarray | None]:
    """The canonical table (the test survey's groups joined in when data.test_source names
    one), and the synthetic world's own features when the source is synthetic."""
    d, features = cfg.data, None
    if d.source == "synthetic":
        table, features = d.synthetic.build()
    else:
        table = load_table(d.resolved_source(), d.on_bad_rows)
    if d.test_source:
        other = load_table(d.resolve(d.test_source), d.on_bad_rows)
        table = with_test_survey(table, other, d.test_groups, d.name())
    if d.options_as_letters:
        table = options_as_letters(table)
    if d.questions:
        table = only_questions(table, Path(d.resolve(d.questions)))
    return table.assign(dataset=d.name()), features


def only_questions(table: pd.DataFrame, listing: Path) -> pd.DataFrame:
    """The rows of the questions whose ids the `key` column of `listing` names (e.g. the 500
    contentious OpinionQA questions the paper uses: its disagreement info.csv)."""
    keys = set(read_csv(listing, ["key"], usecols=["key"])["key"].astype(str))
    kept = table[table.qid.isin(keys)]
    if kept.empty:
        raise DataError(f"{listing}: none of its {len(keys)} question keys is a question of the survey (data.questions)")
    log.info("data.questions: %d of the survey's %d questions are listed in %s", kept.qid.nunique(), table.qid.nunique(), listing)
    return kept


def load_survey(cfg: ExperimentConfig, table: pd.DataFrame | None = None) -> tuple[SurveyData, GroupSplit, np.ndarray | None]:
    """(survey arrays, group split, synthetic features or None).

    Questions are kept per role: a group that may be evaluated answers the evaluation
    questions (those its groups answered: all of them, or data.min_groups), while a training
    group keeps every question it answered, so its tasks draw from all of them."""
    if cfg.data.unit == "respondent":
        responses, features = None, None
        if cfg.data.source == "synthetic":
            responses, features, _ = cfg.data.synthetic_respondents.build()
        data, split = load_respondents(cfg, responses)
        return data, split, features
    features = None
    if table is None:
        table, features = load_source(cfg)
    d = cfg.data
    if "label" not in table:
        table = table.assign(label=group_labels(table))
    # the groups of data.test_source are its test groups (labelled by load_source); every other
    # role is named among, or drawn from, the groups of data.source
    other = table["test_source"] if "test_source" in table else pd.Series(False, index=table.index)
    own = table[~other]
    named = {role: resolve_groups(own, getattr(d, f"{role}_groups")) if getattr(d, f"{role}_groups") else []
             for role in ("val", "train")}
    named["test"] = list(dict.fromkeys(table["label"][other])) if other.any() else \
        resolve_groups(own, d.test_groups) if d.test_groups else []
    pool = resolve_groups(own, d.groups) if not (named["test"] and named["train"]) else []
    extra = resolve_groups(own, d.extra_train_groups, exclude=[*pool, *named["test"], *named["val"], *named["train"]]) \
        if d.extra_train_groups else []
    evaluated = list(dict.fromkeys([*pool, *named["test"], *named["val"]]))
    candidates = list(dict.fromkeys([*(named["train"] or pool), *extra]))
    data = select(table, evaluated, d.require_all_groups, d.require_ordinal, d.min_groups,
                  [g for g in candidates if g not in evaluated], own_questions=candidates)
    split = split_groups(pool, d.train_fraction, d.val_fraction, d.split_seed, extra, **named, rounding=d.split_rounding,
                         validation=d.validation)
    data = data.without([g for g in data.tasks if g not in split.train], ~data.filtered)
    if d.test_answer_fraction < 1:
        data = sparse_test_groups(data, split.test, d.test_answer_fraction, d.split_seed)
    if d.new_question_fraction:
        data = new_questions(data, split, d.new_question_fraction, d.split_seed)
    return data, split, features


def load_respondents(cfg: ExperimentConfig, responses: Responses | None = None) -> tuple[SurveyData, GroupSplit]:
    """Every respondent a task: the survey arrays and the respondents' split, drawn within each
    survey form. A respondent who answered no more questions than the largest context size is
    a bad row (nothing would be left to predict), reported and skipped, or an error, by
    data.on_bad_rows."""
    d = cfg.data
    responses = responses or load_responses(d.resolved_source(), d.on_bad_rows)
    responses = with_enough_answers(responses, tasks_need(cfg), BadRows(d.on_bad_rows))
    known = set(responses.respondents)
    named = {}
    for role in ("test", "val", "train"):
        ids = [str(i) for i in getattr(d, f"{role}_groups")] if isinstance(getattr(d, f"{role}_groups"), list) else []
        unknown = [i for i in ids if i not in known]
        if getattr(d, f"{role}_groups") and (unknown or not ids):
            raise DataError(f"data.{role}_groups: respondents are named by id; not in the data: "
                            f"{unknown[:5] or getattr(d, f'{role}_groups')}")
        named[role] = ids
    split = split_respondents(responses.respondents, forms(responses.asked), d.train_fraction, d.val_fraction,
                              d.split_seed, **named)
    return replace(respondent_survey(responses, d.require_ordinal), dataset=d.name()), split


def tasks_need(cfg: ExperimentConfig) -> int:
    """The answers a respondent needs to be a task: more than the largest context size."""
    return max(*cfg.eval.ks, cfg.train.val_k) + 1


def with_enough_answers(responses: Responses, need: int, bad: BadRows) -> Responses:
    """The respondents with at least `need` answers; each other one is reported by `bad` and
    joins the responses' problems (what `gpo data` lists and writes to its bad rows)."""
    n = (responses.answers >= 0).sum(1)
    short = np.flatnonzero(n < need)
    for i in short:  # the respondents reported, not every respondent
        bad.add(RowProblem(responses.files[responses.file_index[i]], int(responses.rows[i]), "answers",
                           f"{n[i]} answers: a task needs more than the largest context size ({need - 1})"))
    bad.report()
    if len(short) == len(n):
        raise DataError(f"{responses.dataset}: no respondent answered more than {need - 1} questions (lower eval.ks)")
    if not len(short):
        return responses
    log.warning("%s: %d of %d respondents answered at most %d questions, the largest context size (eval.ks, train.val_k): "
                "left out", responses.dataset, len(short), len(n), need - 1)
    return replace(keep_respondents(responses, n >= need), problems=[*responses.problems, *bad.problems])


def keep_respondents(responses: Responses, keep: np.ndarray) -> Responses:
    """The respondents marked in `keep` (R,), in order."""
    return replace(responses, respondents=[r for r, k in zip(responses.respondents, keep) if k], answers=responses.answers[keep],
                   asked=responses.asked[keep], weights=responses.weights[keep],
                   attributes=responses.attributes[keep].reset_index(drop=True), rows=responses.rows[keep],
                   file_index=responses.file_index[keep])


def forms(asked: np.ndarray, smallest: int = 20) -> np.ndarray:
    """(R,) a stratum per respondent: the set of questions put to it (a survey form, with its
    skip patterns); sets shared by fewer than `smallest` respondents form one stratum together."""
    _, pattern, counts = np.unique(np.packbits(asked, axis=1), axis=0, return_inverse=True, return_counts=True)
    pattern = pattern.reshape(-1)
    return np.where(counts[pattern] >= smallest, pattern, -1)


def new_questions(data: SurveyData, split: GroupSplit, fraction: float, seed: int) -> SurveyData:
    """The new-questions protocol: two disjoint seeded shares `fraction` of the evaluation
    questions, one that only the test groups answered and one that only the validation groups
    answered; each of those groups is scored on its own new questions alone, its context drawn
    from the questions every group answered. Training groups answered neither."""
    rng = np.random.default_rng([seed, 41])
    candidates = rng.permutation(np.flatnonzero(data.filtered))
    n = int(round(fraction * len(candidates)))
    if n == 0 or 2 * n >= len(candidates):
        raise ConfigError(f"data.new_question_fraction: {fraction} of {len(candidates)} evaluation questions leaves no "
                          "new or no shared questions")
    new = {role: np.isin(np.arange(len(data.qids)), ids) for role, ids in (("test", candidates[:n]), ("val", candidates[n:2 * n]))}
    data = data.without(split.train, new["test"] | new["val"]).without(split.val, new["test"]).without(split.test, new["val"])
    scored = np.ones((len(data.tasks), len(data.qids)), bool)
    row_of = {g: i for i, g in enumerate(data.tasks)}
    for role in ("test", "val"):
        scored[[row_of[g] for g in getattr(split, role)]] = new[role]
    return replace(data, scored=scored)


def sparse_test_groups(data: SurveyData, groups: list[str], fraction: float, seed: int) -> SurveyData:
    """Each of `groups` keeps a random `fraction` of the questions it answered (seeded)."""
    rng = np.random.default_rng([seed, 30])
    for g in groups:
        answered = np.flatnonzero(data.available[data.tasks.index(g)])
        dropped = rng.choice(answered, len(answered) - max(1, int(round(fraction * len(answered)))), replace=False)
        data = data.without([g], np.isin(np.arange(len(data.qids)), dropped))
    return data


def load_inputs(cfg: ExperimentConfig) -> tuple[SurveyData, GroupSplit, np.ndarray]:
    """The survey, its group split and the (cached) embeddings: what every run of a study shares."""
    data, split, features = load_survey(cfg)
    check_context_sizes(data, split, cfg)
    answered = dict(zip(data.tasks, data.available.sum(1).tolist()))
    log.info("%s: %d questions; answered per group: train %s, val %s, test %s", data.dataset, len(data.qids),
             *(f"{min(answered[g] for g in groups)}-{max(answered[g] for g in groups)}"
               for groups in (split.train, split.val, split.test)))
    if cfg.embed.model == "synthetic":
        if features is None:
            raise ConfigError("embed.model 'synthetic' needs data.source 'synthetic'")
        return data, split, features
    return data, split, embed_survey(data, cfg.embed)


def check_context_sizes(data: SurveyData, split: GroupSplit, cfg: ExperimentConfig) -> None:
    """Every k must leave some group something to predict (a group with at most k questions
    is left out at that k, with a warning; if every group would be, k is a config error)."""
    answered = dict(zip(data.tasks, data.available.sum(1).tolist()))
    checks = (("eval.ks", cfg.eval.ks, "test", split.test), ("train.val_k", [cfg.train.val_k], "validation", split.val))
    for key, ks, role, groups in checks:
        most = max(answered[g] for g in groups)
        too_large = [k for k in ks if k >= most]
        if too_large:
            raise ConfigError(f"{key}: {too_large[0] if len(ks) == 1 else too_large} context questions leave no {role} group "
                              f"anything to predict (the most questions a {role} group answered is {most})")


def assemble(data: SurveyData, split: GroupSplit, x: np.ndarray, device: str) -> Prepared:
    points = Points.build(data, x, device)
    labels = labels_of(data, device)
    row_of = {g: i for i, g in enumerate(data.tasks)}
    train = [row_of[g] for g in split.train]
    if data.unit == "respondent":
        if len(train) < FEW_RESPONDENTS:
            log.warning("%s: %d training respondent(s): the population's shares and every method that reads the panel rest "
                        "on them alone; expect noisy predictions (add respondents or raise data.train_fraction)",
                        data.dataset, len(train))
        if not (data.weights[train] > 0).any():
            raise DataError(f"{data.dataset}: every training respondent's survey weight is 0, so the panel's shares are "
                            "undefined: give them positive weights (or drop the weight column)")
        basis = Panel.build(labels, train, data.demographics, points.question_points, points.point_question, data.weights,
                            points.uniform())
    else:
        prior = question_prior(points, labels, train)
        basis = Basis.build(labels, train, points.uniform() if prior is None else prior.shares)
    log.info("%s: %d questions, %d points, %d %ss (train %d, val %d, test %d), x dim %d",
             data.dataset, len(data.qids), data.n_points, len(data.tasks), data.unit, len(split.train),
             len(split.val), len(split.test), x.shape[1])
    return Prepared(data, split, points, labels, basis, data.unit, None if data.unit == "respondent" else prior)


def question_prior(points: Points, labels: torch.Tensor, train: list[int]) -> QuestionPrior | None:
    """The training groups' shares predicted from the questions (gpo/question_prior.py), where
    some group answered a question that no training group did; None where there is none."""
    uncovered = ~(~labels[train].isnan()).any(0) & (~labels.isnan()).any(0)
    if not uncovered.any():
        return None
    prior = fit_question_prior(points, labels[train])
    log.info("%.0f%% of the points answered are answered by no training group: there the training groups' shares come "
             "from %s", 100 * float(uncovered.float().mean()), prior.describe())
    return prior


def prepare(cfg: ExperimentConfig) -> Prepared:
    return assemble(*load_inputs(cfg), pick_device(cfg.train.device))
