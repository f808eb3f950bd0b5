"""From the canonical table to aligned arrays: questions, points, groups and their shares.

A point is one (question, option). `SurveyData.y[g, p]` is group g's share of point p
(NaN where the group did not answer the question), so every model and baseline reads
the same arrays and the same point order.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import pandas as pd

from gpo.errors import DataError

# Group sets of the GPO paper (OpinionQA without its religion groups, which the shared
# data lacks; GlobalOpinionQA's 14 countries).
GROUP_PRESETS = {
    "paper17": [
        "Northeast", "South", "Female", "Male", "College graduate/some postgrad",
        "Less than high school", "Democrat", "Republican", "$100,000 or more",
        "Less than $30,000", "Conservative", "Liberal", "Moderate",
        "Asian", "Black", "Hispanic", "White",
    ],
    "paper14": [
        "Nigeria", "Egypt", "India (Current national sample)", "China", "Japan", "Germany",
        "France", "Spain", "United States", "Canada", "Brazil", "Argentina", "Australia",
        "New Zealand",
    ],
}


@dataclass(frozen=True)
class SurveyText:
    """What a survey says, without anyone's answers: what prompt-based methods may read."""

    questions: list[str]
    options: list[list[str]]
    groups: list[str]
    attributes: list[str]


@dataclass
class SurveyData:
    """A survey's tasks (groups, or respondents) and their shares of every point; for
    respondents the shares are one-hot on the answer, and each respondent carries its survey
    weight and its demographic attributes."""

    dataset: str
    qids: list[str]
    questions: list[str]
    options: list[list[str]]
    ordinal: list[list[float] | None]
    tasks: list[str]  # task names: group labels, or respondent ids
    attributes: list[str]  # each group's attribute ("POLPARTY", "COUNTRY", ...; "RESPONDENT")
    y: np.ndarray  # (G, P) float32 shares, NaN where the group lacks the question
    filtered: np.ndarray  # (Q,) bool: an evaluation question (passed the question filters)
    unit: str = "group"  # "group", or "respondent": every task one person
    scored: np.ndarray | None = None  # (G, Q) bool: the questions a group is scored on (None: all it answered)
    weights: np.ndarray | None = None  # (G,) respondents' survey weights
    demographics: pd.DataFrame | None = None  # G rows: respondents' attributes (categorical, NaN = unknown)

    @cached_property
    def n_options(self) -> np.ndarray:  # (Q,)
        return np.array([len(o) for o in self.options])

    @cached_property
    def point_question(self) -> np.ndarray:  # (P,) question index of each point
        return np.repeat(np.arange(len(self.qids)), self.n_options)

    @cached_property
    def question_points(self) -> np.ndarray:  # (Q, O_max) point indices, -1 pads
        starts = np.concatenate([[0], np.cumsum(self.n_options)[:-1]])
        slots = np.arange(self.n_options.max())
        return np.where(slots < self.n_options[:, None], starts[:, None] + slots, -1)

    @cached_property
    def available(self) -> np.ndarray:  # (G, Q) bool: the group answered the question
        return ~np.isnan(self.y[:, self.question_points[:, 0]])

    @property
    def text(self) -> SurveyText:
        return SurveyText(self.questions, self.options, self.tasks, self.attributes)

    @property
    def n_points(self) -> int:
        return int(self.n_options.sum())

    def without(self, groups: list[str], questions: np.ndarray) -> "SurveyData":
        """The survey with the answers of `groups` to the questions marked in `questions` (Q,)
        removed (as if never given)."""
        if not groups or not questions.any():
            return self
        y = self.y.copy()
        row_of = {g: i for i, g in enumerate(self.tasks)}
        y[np.ix_([row_of[g] for g in groups], questions[self.point_question])] = np.nan
        return replace(self, y=y)

    def digest(self) -> str:
        """Hash of the questions and options (what embeddings depend on), not of the shares."""
        payload = json.dumps([self.dataset, self.qids, self.questions, self.options])
        return hashlib.sha1(payload.encode()).hexdigest()[:16]



def group_labels(table: pd.DataFrame) -> pd.Series:
    """A group's name, prefixed by its attribute only where the name alone is ambiguous."""
    pairs = table[["attribute", "group"]].drop_duplicates()
    ambiguous = set(pairs["group"][pairs["group"].duplicated()])
    return table["group"].where(~table["group"].isin(ambiguous), table["attribute"] + ":" + table["group"])


def resolve_groups(table: pd.DataFrame, groups: str | list[str], exclude=()) -> list[str]:
    """Group labels (the table's `label` column where it has one) from a preset name, "all",
    "rest" (all but `exclude`) or a list."""
    known = list(dict.fromkeys(table["label"] if "label" in table else group_labels(table)))
    if groups in ("all", "rest"):
        return [g for g in known if g not in exclude]
    wanted = GROUP_PRESETS.get(groups, groups) if isinstance(groups, str) else list(groups)
    if isinstance(wanted, str):
        raise DataError(f"unknown group preset {wanted!r}; presets: {sorted(GROUP_PRESETS)}, 'all' or 'rest'")
    unknown = [g for g in wanted if g not in known]
    if unknown:
        raise DataError(f"unknown group(s) {unknown} in the data; known: {known}")
    return [g for g in wanted if g not in exclude]


def select(
    table: pd.DataFrame,
    groups: str | list[str] = "all",
    require_all_groups: bool = True,
    require_ordinal: bool = False,
    min_groups: int = 1,
    extra_groups: str | list[str] = (),
    own_questions: list[str] = (),
) -> SurveyData:
    """Arrays for the chosen groups and the questions they answered.

    groups: a preset name (see GROUP_PRESETS), "all", or a list of group labels: the groups
    that may be evaluated, whose answers decide the evaluation questions (`filtered`):
    require_all_groups keeps questions every one of them answered (OpinionQA); otherwise
    questions answered by at least `min_groups` of them (GlobalOpinionQA).
    extra_groups: more groups (a list, or "rest" for all others), after `groups`, that do not
    shape the evaluation questions.
    own_questions: groups that keep every question they answered (training groups: each
    task draws from what its group answered), beyond the evaluation questions.
    A table may carry its own `label` column (surveys combined by the caller).
    """
    if "label" not in table:
        table = table.assign(label=group_labels(table))
    wanted = resolve_groups(table, groups)
    extra = resolve_groups(table, extra_groups, exclude=wanted) if extra_groups else []
    if require_ordinal:
        table = table[table["ordinal"].notna()]
    counts = table[table["label"].isin(wanted)].groupby("qid")["label"].nunique()
    need = len(wanted) if require_all_groups else min_groups
    filtered = set(counts.index[counts >= need])
    if not filtered:
        raise DataError(f"no question is answered by {'all' if require_all_groups else min_groups} of groups {wanted}")
    own = table["label"].isin(own_questions)
    table = table[table["label"].isin(wanted + extra) & (table["qid"].isin(filtered) | own)]
    empty = [g for g in wanted + extra if g not in set(table["label"])]
    if empty:
        raise DataError(f"group(s) {empty} answered none of the kept questions "
                        f"({'ordinal, ' if require_ordinal else ''}answered by {'all' if require_all_groups else min_groups} "
                        f"of the {len(wanted)} groups that may be evaluated)")

    wanted = wanted + extra
    questions = table.drop_duplicates("qid").sort_values("qid", kind="stable")
    qindex = {q: i for i, q in enumerate(questions["qid"])}
    gindex = {g: i for i, g in enumerate(wanted)}
    attribute_of = dict(zip(table["label"], table["attribute"]))
    n_options = questions["options"].map(len).to_numpy()
    starts = np.concatenate([[0], np.cumsum(n_options)[:-1]])
    y = np.full((len(wanted), int(n_options.sum())), np.nan, dtype=np.float32)
    for qid, label, dist in zip(table["qid"], table["label"], table["distribution"]):
        g, q = gindex[label], qindex[qid]
        y[g, starts[q]:starts[q] + len(dist)] = dist
    return SurveyData(
        dataset=str(questions["dataset"].iloc[0]),
        qids=questions["qid"].tolist(),
        questions=questions["question"].tolist(),
        options=[list(o) for o in questions["options"]],
        ordinal=[None if o is None else list(o) for o in questions["ordinal"]],
        tasks=list(wanted),
        attributes=[attribute_of[g] for g in wanted],
        y=y,
        filtered=questions["qid"].isin(filtered).to_numpy(),
    )


def respondent_survey(responses, require_ordinal: bool = False) -> SurveyData:
    """Arrays for per-respondent answers (gpo/data/responses.py `Responses`): every respondent
    a task whose share of a point is 1 for the option it chose and 0 for the question's other
    options (NaN for questions it did not answer), built without a Python object per answer."""
    keep = np.array([o is not None for o in responses.ordinal]) if require_ordinal else np.ones(len(responses.qids), bool)
    if not keep.any():
        raise DataError(f"{responses.dataset}: no question has an ordinal scale (set data.require_ordinal=false)")
    options = [o for o, k in zip(responses.options, keep) if k]
    n_options = np.array([len(o) for o in options])
    point_question = np.repeat(np.arange(len(options)), n_options)
    point_option = np.arange(n_options.sum()) - np.repeat(np.cumsum(n_options) - n_options, n_options)
    chosen = responses.answers[:, keep][:, point_question]  # (R, P) the option each respondent chose there
    y = np.where(chosen >= 0, (chosen == point_option).astype(np.float32), np.float32(np.nan))
    return SurveyData(
        dataset=responses.dataset,
        qids=[q for q, k in zip(responses.qids, keep) if k],
        questions=[q for q, k in zip(responses.questions, keep) if k],
        options=[list(o) for o in options],
        ordinal=[o for o, k in zip(responses.ordinal, keep) if k],
        tasks=list(responses.respondents),
        attributes=["RESPONDENT"] * len(responses.respondents),
        y=y,
        filtered=np.ones(int(keep.sum()), bool),
        unit="respondent",
        weights=np.asarray(responses.weights, dtype=np.float64),
        demographics=responses.attributes.reset_index(drop=True),
    )
