"""Per-respondent answers from a CSV (`*.csv` or `*.csv.gz`): one row per (respondent, question)
with columns `respondent` (id), `question` (text), `options` (a JSON or Python list of the
option texts in order; refusals such as "Refused" may be listed and are dropped) and `answer`
(the chosen option's text; a refusal or an empty cell = asked but not answered). Optional:
`qid` (default: a hash of the question text and its options, so the same text with other
options is another question), `ordinal` (a list of values, one per non-refusal option;
trailing options without one are off the scale) and `weight` (survey weight, default 1). Every
other column is a respondent attribute (empty = refused). A question's text, options and
ordinal values, and a respondent's weight and attributes, must be the same on all their rows.
Each distinct cell text is parsed once.
"""

from __future__ import annotations

import csv
import gzip
import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from gpo.data.jsonl import question_id
from gpo.data.opinionqa import REFUSALS
from gpo.data.responses import Block, Checks, as_numbers, factorize, pair_codes, stripped
from gpo.data.schema import BadRows, check_distribution, literal, normalise_ordinal, option_text, read_csv
from gpo.errors import DataError

CSV_COLUMNS = ("respondent", "question", "options", "answer")
CSV_OPTIONAL = ("qid", "ordinal", "weight")


def is_respondent_csv(path: str | Path) -> bool:
    """Whether `path` is a per-respondent CSV: a .csv or .csv.gz whose header holds CSV_COLUMNS."""
    path = Path(path)
    if not (path.is_file() and path.name.lower().endswith((".csv", ".csv.gz"))):
        return False
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as f:
            header = next(csv.reader([f.readline()]), [])
    except (OSError, EOFError, zlib.error):
        return False
    return set(CSV_COLUMNS) <= {c.strip() for c in header}


def csv_block(path: Path, bad: BadRows) -> Block:
    frame = _read_csv(path)
    checks = Checks(str(path), len(frame), bad)
    who = stripped(frame["respondent"])
    checks.drop(who.isna(), "respondent", "missing respondent id")
    text = stripped(frame["question"])
    checks.drop(text.isna(), "question", "missing question text")
    options, option_codes = _csv_options(frame["options"], checks)
    ordinals, ordinal_codes = _csv_ordinal(frame.get("ordinal"), options, option_codes, checks)
    qid = _csv_qids(frame.get("qid"), text, options, option_codes, checks)

    q_codes = factorize(qid.where(checks.ok))[0]
    for field, codes in (("question", factorize(text)[0]), ("options", option_codes), ("ordinal", ordinal_codes)):
        checks.drop_later(q_codes, lambda i, j, c=codes: c[i] == c[j], field,
                          lambda i, first: f"differs from row {first + 1} of question {qid.iloc[i]}")
    r_codes = factorize(who.where(checks.ok))[0]
    checks.drop_later(pair_codes(r_codes, q_codes), None, "respondent",
                      lambda i, first: f"duplicate of row {first + 1} (respondent {who.iloc[i]}, question {qid.iloc[i]})")
    attributes = [c for c in frame.columns if c not in CSV_COLUMNS + CSV_OPTIONAL]
    for field in [c for c in ("weight", *attributes) if c in frame.columns]:
        checks.drop_later(r_codes, _same_value(frame[field], numeric=field == "weight"), field,
                          lambda i, first: f"differs from row {first + 1} of respondent {who.iloc[i]}")
    if "weight" in frame.columns:
        heads = checks.first_of(r_codes) == np.arange(len(frame))
        checks.weights(frame["weight"], "weight", heads)
        checks.ok &= ~np.isin(r_codes, r_codes[heads & ~checks.ok])  # the rest of a dropped respondent

    chosen = _csv_answers(frame["answer"], qid, options, option_codes, checks)
    return _csv_arrays(frame, checks, who, text, qid, options, option_codes, ordinals, ordinal_codes, chosen, attributes)


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return read_csv(path, CSV_COLUMNS, keep_default_na=False, na_values=[""], dtype=str)
    except (EOFError, OSError, zlib.error) as e:  # a cut-off or corrupt gzip stream (BadGzipFile is an OSError)
        raise DataError(f"{path}: unreadable ({type(e).__name__}: {e})") from None


def _same_value(column: pd.Series, numeric: bool):
    """Equality of a respondent field between rows: the same text (two empty cells are the same),
    or for a number the same value ("1" and "1.0")."""
    codes = factorize(column)[0]
    if not numeric:
        return lambda i, j: codes[i] == codes[j]
    values = as_numbers(column)
    return lambda i, j: (codes[i] == codes[j]) | (values[i] == values[j])


def _list_cell(text, none_ok: bool = False):
    """A JSON or Python list literal as a list (None for null/None where `none_ok`); ValueError otherwise."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        try:
            value = literal(text)
        except ValueError:
            value = text
    if not isinstance(value, list) and not (none_ok and value is None):
        raise ValueError(f"not a JSON or Python list literal: {str(text)[:80]!r}")
    return value


def _csv_options(column: pd.Series, checks: Checks) -> tuple[list[list[str]], np.ndarray]:
    """The distinct options lists (refusals removed, option_text applied) and each good row's
    index into them (-1 for a dropped row); rows with missing or malformed options are dropped."""
    codes, uniques = factorize(column)
    parsed, reasons = [], []
    for text in uniques:
        try:
            value = [o for o in _list_cell(text) if not (isinstance(o, str) and o.strip().lower() in REFUSALS)]
            problem = check_distribution(value, [1.0 / max(len(value), 1)] * len(value), None)
        except (ValueError, OverflowError) as e:  # OverflowError: an integer too large to write as an option
            value, problem = [], ("options", str(e))
        texts = [option_text(o) for o in value] if problem is None else None
        if texts is not None and len(set(texts)) < len(texts):
            texts, problem = None, ("options", "two options have the same text")
        parsed.append(texts)
        reasons.append(problem and problem[1])
    checks.drop(codes < 0, "options", "missing options")
    broken = np.array([p is None for p in parsed] + [False])
    checks.drop(broken[codes], "options", lambda i: reasons[codes[i]])
    # texts that parse to the same list (JSON and Python quoting, spacing) are one options list
    canonical: dict[tuple, int] = {}
    remap = np.array([-1 if p is None else canonical.setdefault(tuple(p), len(canonical)) for p in parsed] + [-1])
    return [list(p) for p in canonical], np.where(checks.ok, remap[codes], -1)


def _csv_ordinal(column, options: list[list[str]], option_codes: np.ndarray, checks: Checks):
    """The distinct ordinal scales (normalise_ordinal) and each good row's index into them; rows
    whose ordinal values are malformed or do not fit their options are dropped."""
    if column is None:
        return [None], np.where(checks.ok, 0, -1)
    codes, uniques = factorize(column)
    pair = pair_codes(option_codes, codes + 1)  # ordinal code 0: an empty cell, unordered
    good = np.flatnonzero(pair >= 0)
    _, at = np.unique(pair[good], return_index=True)  # the first row of each pair; pair codes count up from 0
    values, reasons = [], []
    for row in good[at]:
        opts = options[option_codes[row]]
        try:
            ordinal = None if codes[row] < 0 else _list_cell(uniques[codes[row]], none_ok=True)
            problem = check_distribution(opts, [1.0 / len(opts)] * len(opts), ordinal)
        except (ValueError, OverflowError) as e:
            ordinal, problem = None, ("ordinal", str(e))
        values.append(None if problem else json.dumps(normalise_ordinal(ordinal, len(opts))))
        reasons.append(problem and problem[1])
    broken = np.array([v is None for v in values] + [False])
    checks.drop(broken[pair], "ordinal", lambda i: reasons[pair[i]])
    canonical: dict[str, int] = {}  # equal scales written differently are one scale
    remap = np.array([-1 if v is None else canonical.setdefault(v, len(canonical)) for v in values] + [-1])
    return [json.loads(v) for v in canonical], np.where(checks.ok, remap[pair], -1)


def _csv_qids(column, text: pd.Series, options: list[list[str]], option_codes: np.ndarray, checks: Checks) -> pd.Series:
    """Each row's question id: the `qid` column (rows without one are dropped), else
    question_id(question, options), computed once per distinct (question, options)."""
    if column is not None:
        qid = stripped(column)
        checks.drop(qid.isna(), "qid", "missing qid")
        return qid
    text_codes, texts = factorize(text)
    pair = pair_codes(text_codes, option_codes)
    good = np.flatnonzero(pair >= 0)
    _, at = np.unique(pair[good], return_index=True)
    ids = np.array([question_id(texts[text_codes[r]], options[option_codes[r]]) for r in good[at]] + [None], dtype=object)
    return pd.Series(ids[pair], index=text.index)


def _csv_answers(column: pd.Series, qid: pd.Series, options: list[list[str]], option_codes: np.ndarray,
                 checks: Checks) -> np.ndarray:
    """Each row's chosen option index (-1: refused, empty or not an option); an answer that is not
    an option of its question is reported, and its row kept as asked."""
    answer = stripped(column)
    answer_codes, texts = factorize(answer)
    pair = pair_codes(option_codes, answer_codes)
    good = np.flatnonzero(pair >= 0)
    _, at = np.unique(pair[good], return_index=True)  # the first row of each distinct (options, answer)
    position = [_position(options[option_codes[r]], texts[answer_codes[r]]) for r in good[at]]
    chosen = np.array([*position, -1], dtype=np.int16)[pair]
    checks.report(chosen == -2, "answer", lambda i: f"answer {answer.iloc[i]!r} is not an option of question {qid.iloc[i]}")
    return np.maximum(chosen, -1)


def _position(options: list[str], answer: str) -> int:
    """The answer's option index; -1 for a refusal, -2 for an answer that is no option."""
    if answer in options:
        return options.index(answer)
    return -1 if answer.lower() in REFUSALS else -2


def _csv_arrays(frame: pd.DataFrame, checks: Checks, who: pd.Series, text: pd.Series, qid: pd.Series,
                options, option_codes, ordinals, ordinal_codes, chosen: np.ndarray, attributes: list[str]) -> Block:
    """The good rows as a block: respondents in order of first appearance, questions by qid."""
    good = np.flatnonzero(checks.ok)
    r_codes, ids = factorize(who.iloc[good])
    qids = sorted(pd.unique(qid.iloc[good]))
    q_codes = pd.Index(qids).get_indexer(qid.iloc[good])
    _, heads = np.unique(r_codes, return_index=True)  # codes count up in order of first appearance
    _, q_heads = np.unique(q_codes, return_index=True)
    answers = np.full((len(ids), len(qids)), -1, dtype=np.int16)
    asked = np.zeros((len(ids), len(qids)), dtype=bool)
    answers[r_codes, q_codes] = chosen[good]
    asked[r_codes, q_codes] = True
    first, q_first = good[heads], good[q_heads]
    weights = as_numbers(frame["weight"].iloc[first]) if "weight" in frame.columns else np.ones(len(ids))
    return Block(
        file=checks.file, id_field="respondent", qids=qids,
        questions=[str(t) for t in text.iloc[q_first]],
        options=[options[c] for c in option_codes[q_first]],
        ordinal=[ordinals[c] for c in ordinal_codes[q_first]],
        ids=ids, rows=first + 1, answers=answers, asked=asked, weights=weights,
        attributes=frame.iloc[first][attributes].reset_index(drop=True), groups={},
    )


