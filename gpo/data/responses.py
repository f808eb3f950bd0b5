"""What both per-respondent readers share (gpo/data/release_responses.py, csv_responses.py): the
arrays they produce (`Responses`), one file's respondents before files are combined (`Block`),
the row checks that report bad input under the `on_bad_rows` policy (`Checks`), and combining
files (`combine`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gpo.data.schema import BadRows, RowProblem
from gpo.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class Responses:
    """Per-respondent answers: R respondents in source order, Q questions in qid order."""

    dataset: str  # "opinionqa" for the release, else the file's name without .csv / .csv.gz
    qids: list[str]  # (Q,) sorted, as gpo/data/survey.py `select` orders them
    questions: list[str]  # (Q,) question texts
    options: list[list[str]]  # (Q,) options, refusals removed, option_text applied
    ordinal: list[list[float] | None]  # (Q,) normalise_ordinal per question; None: unordered
    respondents: list[str]  # (R,) unique ids
    answers: np.ndarray  # (R, Q) int16 chosen option's index; -1: not asked, refused or a dropped answer
    asked: np.ndarray  # (R, Q) bool: the question was put to the respondent (a non-empty cell / a CSV row)
    weights: np.ndarray  # (R,) float64 survey weights, 1.0 where the source has none
    attributes: pd.DataFrame  # R rows, one "category" column per attribute, NaN where refused or empty
    rows: np.ndarray  # (R,) int64 the respondent's row (in the CSV: its first row) in its file
    files: list[str]  # the source files
    file_index: np.ndarray  # (R,) int16 each respondent's file, an index into `files`
    problems: list[RowProblem]  # everything skipped (file, row, field, reason)

    def where(self, i: int) -> str:
        """Respondent i's origin, as error messages name it."""
        return f"{self.files[self.file_index[i]]}: row {self.rows[i]}"


@dataclass
class Block:
    """One file's respondents, before the files are combined."""

    file: str
    id_field: str  # the column that names a respondent
    qids: list[str]
    questions: list[str]
    options: list[list[str]]
    ordinal: list[list[float] | None]
    ids: np.ndarray  # (R,) object
    rows: np.ndarray  # (R,)
    answers: np.ndarray  # (R, Q) int16
    asked: np.ndarray  # (R, Q) bool
    weights: np.ndarray  # (R,)
    attributes: pd.DataFrame  # R rows, values as read
    groups: dict[str, list[str]]  # an attribute's known groups (metadata.csv), its first categories


class Checks:
    """Which rows of one file are still good; problems go to `bad` under its policy."""

    def __init__(self, file: str, n: int, bad: BadRows):
        self.file, self.bad = file, bad
        self.ok = np.ones(n, dtype=bool)

    def report(self, mask, field: str, reason) -> None:
        """Report the good rows in `mask`; `reason` is a text or a function of the row's index."""
        for i in np.flatnonzero(np.asarray(mask, dtype=bool) & self.ok):
            self.bad.add(RowProblem(self.file, int(i) + 1, field, reason(i) if callable(reason) else reason))

    def drop(self, mask, field: str, reason) -> None:
        """Report the good rows in `mask`, and drop them."""
        self.report(mask, field, reason)
        self.ok &= ~np.asarray(mask, dtype=bool)

    def first_of(self, codes: np.ndarray) -> np.ndarray:
        """Each row's first good row with the same code (-1: a missing code, or no good row has it)."""
        first = np.full(int(codes.max(initial=-1)) + 2, -1, dtype=np.int64)  # slot -1 stays -1
        good = np.flatnonzero(self.ok & (codes >= 0))
        keys, at = np.unique(codes[good], return_index=True)
        first[keys] = good[at]
        return first[codes]

    def drop_later(self, codes: np.ndarray, same, field: str, reason) -> None:
        """Drop the good rows that follow the first good row of their code: all of them (`same`
        None: duplicates) or those whose value differs from it (`same(rows, firsts)` -> bool)."""
        first = self.first_of(codes)
        rows = np.arange(len(codes))
        later = (first >= 0) & (first != rows)
        if same is not None:
            later &= ~same(rows, np.maximum(first, 0))
        self.drop(later, field, lambda i: reason(i, int(first[i])))

    def weights(self, raw: pd.Series, field: str, at: np.ndarray) -> np.ndarray:
        """Weights as floats; the good rows marked in `at` whose weight is missing, not a number,
        negative or infinite are dropped."""
        values = as_numbers(raw)
        self.drop(at & raw.isna().to_numpy(), field, "missing weight")
        self.drop(at & np.isnan(values), field, lambda i: f"weight {raw.iloc[i]!r} is not a number")
        self.drop(at & (values < 0), field, lambda i: f"negative weight {values[i]:g}")
        self.drop(at & np.isinf(values), field, "infinite weight")
        return values


def stripped(column: pd.Series) -> pd.Series:
    """A column as stripped text, blank cells missing."""
    text = column.where(column.isna(), column.astype(str)).str.strip()
    return text.where(text != "")


def factorize(values) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (-1: missing) and the distinct values, in order of first appearance."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    return codes.astype(np.int64), np.asarray(uniques, dtype=object)


def pair_codes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One code per distinct (a, b) of two code arrays (-1 where either is -1)."""
    key = np.where((a >= 0) & (b >= 0), a * (int(b.max(initial=0)) + 1) + b, -1)
    return factorize(pd.Series(key).where(key >= 0))[0]


def as_numbers(column: pd.Series) -> np.ndarray:
    """A column as float64, NaN where missing or not a number; each distinct cell parsed once."""
    codes, uniques = factorize(column)
    values = pd.to_numeric(pd.Series(uniques, dtype=object), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return np.append(values, np.nan)[codes]


def combine(blocks: list[Block], dataset: str, source: str, bad: BadRows) -> Responses:
    """The blocks' respondents in order, over the union of their questions; a question whose
    options differ from its first file's is dropped from the later file, and respondents left
    with no answer are dropped."""
    first: dict[str, tuple] = {}
    for b in blocks:
        for k, q in enumerate(b.qids):
            if q in first and first[q][2] != b.options[k]:
                bad.add(RowProblem(b.file, 0, q, f"options differ from those of question {q} in {first[q][0]}"))
                b.answers[:, k], b.asked[:, k] = -1, False
            first.setdefault(q, (b.file, b.questions[k], b.options[k], b.ordinal[k]))
    qids = sorted(first)
    answers = np.concatenate([_spread(b.answers, b.qids, qids, -1) for b in blocks])
    asked = np.concatenate([_spread(b.asked, b.qids, qids, False) for b in blocks])
    file_index = np.repeat(np.arange(len(blocks), dtype=np.int16), [len(b.ids) for b in blocks])
    rows = np.concatenate([b.rows for b in blocks]).astype(np.int64)
    ids = np.concatenate([b.ids for b in blocks])

    silent = ~(answers >= 0).any(axis=1)
    for i in np.flatnonzero(silent):
        b = blocks[file_index[i]]
        bad.add(RowProblem(b.file, int(rows[i]), b.id_field, f"no answer to any question ({asked[i].sum()} asked)"))
    keep = ~silent
    if not keep.any():
        example = f"; e.g. {bad.problems[0]}" if bad.problems else ""
        raise DataError(f"{source}: no valid respondents ({len(bad.problems)} malformed{example})")
    attributes = pd.concat([b.attributes for b in blocks], ignore_index=True)[keep].reset_index(drop=True)
    groups = {c: [g for b in blocks for g in b.groups.get(c, [])] for c in attributes.columns}
    bad.report()
    weights = np.concatenate([b.weights for b in blocks]).astype(np.float64)[keep]
    if not (weights > 0).any():
        raise DataError(f"{source}: every respondent's survey weight is 0, so no weighted share or mean is defined: give "
                        "positive weights (or drop the weight column: every respondent then weighs 1)")
    if (weights == 0).any():
        log.warning("%s: %d respondent(s) weighted 0: tasks like any other, counted in no survey-weighted share or mean",
                    source, int((weights == 0).sum()))
    return Responses(
        dataset=dataset, qids=qids, questions=[first[q][1] for q in qids], options=[first[q][2] for q in qids],
        ordinal=[first[q][3] for q in qids], respondents=ids[keep].tolist(),
        answers=answers[keep], asked=asked[keep],
        weights=weights,
        attributes=pd.DataFrame({c: _category(attributes[c], groups[c]) for c in attributes.columns},
                                index=pd.RangeIndex(int(keep.sum()))),
        rows=rows[keep], files=[b.file for b in blocks], file_index=file_index[keep], problems=bad.problems,
    )


def _spread(values: np.ndarray, qids: list[str], all_qids: list[str], fill) -> np.ndarray:
    """A block's (R, Q_block) array over all questions, `fill` where the block lacks one."""
    out = np.full((len(values), len(all_qids)), fill, dtype=values.dtype)
    out[:, pd.Index(all_qids).get_indexer(qids)] = values
    return out


def _category(values: pd.Series, known: list[str]) -> pd.Categorical:
    """Values as text categories: the known groups first, then the others sorted; NaN stays NaN."""
    codes, uniques = factorize(values)
    texts = [str(u) for u in uniques]
    categories = list(dict.fromkeys(known + sorted(set(texts) - set(known))))
    position = {c: k for k, c in enumerate(categories)}
    remap = np.array([position[t] for t in texts] + [-1], dtype=np.int64)
    return pd.Categorical.from_codes(remap[codes], categories)
