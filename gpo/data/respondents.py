"""Per-respondent answers as arrays: each survey respondent can be a task of its own.

`load_responses` reads one of two forms:

- a folder in the official OpinionQA release layout (see gpo/data/opinionqa.py): every survey
  folder with a responses.csv. A row of responses.csv is a respondent (`QKEY`); a question
  column holds an answer text or Pew's numeric code, decoded by info.csv's `option_mapping`
  exactly as the group loader decodes it, and an empty cell means not asked. Attributes are
  the keys of metadata.csv that are columns of responses.csv; the weight is `WEIGHT_W<wave>`.
  With several surveys loaded, respondent ids are "<survey folder>/<QKEY>".
- a per-respondent CSV (`*.csv` or `*.csv.gz`): one row per (respondent, question) with columns
  `respondent` (id), `question` (text), `options` (a JSON or Python list of the option texts in
  order; refusals such as "Refused" may be listed and are dropped) and `answer` (the chosen
  option's text; a refusal or an empty cell = asked but not answered). Optional: `qid` (default:
  a hash of the question text and its options, so the same text with other options is another
  question), `ordinal` (a list of values, one per non-refusal option; trailing options without
  one are off the scale) and `weight` (survey weight, default 1). Every other column is a
  respondent attribute (empty = refused). A question's text, options and ordinal values, and a
  respondent's weight and attributes, must be the same on all their rows.

Rows are numbered from 1 at the first data row of their file. Bad input is reported as a
RowProblem (file, row, field, reason) under the `on_bad_rows` policy, as the group loaders do:
an answer that is not an option (or a code outside option_mapping) is dropped; a respondent
with a missing id, a missing, negative or non-numeric weight, or no answer left is dropped (a
weight of 0 is kept, with a warning: the respondent counts in no weighted share or mean; all of
them 0 is an error); a
duplicate respondent (in the CSV: a duplicate (respondent, question) row) is dropped in favour
of the first; CSV rows whose question fields or respondent fields differ from the first row of
their question or respondent are dropped.

Nothing loops over answers or respondents in Python: each step is one numpy or pandas
operation over a column; Python loops run over questions, columns, distinct cell texts (each
options list is parsed once) and reported problems.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from gpo.data.jsonl import question_id
from gpo.data.opinionqa import INFO_COLUMNS, METADATA_COLUMNS, REFUSALS, answer_texts, list_literal, survey_dirs
from gpo.data.schema import BadRows, RowProblem, check_distribution, literal, normalise_ordinal, option_text, read_csv
from gpo.errors import DataError

log = logging.getLogger(__name__)

RELEASE_ID = "QKEY"
CSV_COLUMNS = ("respondent", "question", "options", "answer")
CSV_OPTIONAL = ("qid", "ordinal", "weight")


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
class _Block:
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


def load_responses(path: str | Path, on_bad_rows: str = "skip") -> Responses:
    """Per-respondent answers from a release folder or a per-respondent CSV (module docstring)."""
    path = Path(path)
    bad = BadRows(on_bad_rows)
    if not path.exists():
        raise DataError(f"{path}: not found")
    if path.is_dir():
        dirs = [d for d in survey_dirs(path) if (d / "responses.csv").is_file()]
        if not dirs:
            raise DataError(f"{path}: no responses.csv in any survey folder (the official release has one per wave)")
        blocks = [_survey_block(d, bad) for d in dirs]
        if len(blocks) > 1:
            for d, block in zip(dirs, blocks):
                block.ids = f"{d.name}/" + block.ids.astype(object)
        return _combine(blocks, "opinionqa", str(path), bad)
    if path.name.lower().endswith((".csv", ".csv.gz")):
        dataset = re.sub(r"\.csv(\.gz)?$", "", path.name, flags=re.IGNORECASE)
        return _combine([_csv_block(path, bad)], dataset, str(path), bad)
    raise DataError(f"{path}: unknown per-respondent format (expected an OpinionQA release folder, .csv or .csv.gz)")


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


def responses_table(r: Responses) -> pd.DataFrame:
    """One row per asked (respondent, question), by respondent then qid: `respondent`, `qid` and
    `answer` (the option's text; NaN when refused or dropped) as categoricals, `option` (its
    index; -1 when refused or dropped) and the respondent's `weight`."""
    who, what = np.nonzero(r.asked)
    chosen = r.answers[who, what]
    starts = np.concatenate([[0], np.cumsum([len(o) for o in r.options])[:-1]]).astype(np.int64)
    texts, point_text = np.unique(np.array([t for o in r.options for t in o], dtype=object), return_inverse=True)
    codes = np.where(chosen >= 0, point_text[starts[what] + np.maximum(chosen, 0)], -1)
    return pd.DataFrame({
        "respondent": pd.Categorical.from_codes(who, r.respondents),
        "qid": pd.Categorical.from_codes(what, r.qids),
        "answer": pd.Categorical.from_codes(codes, list(texts)),
        "option": chosen.astype(np.int16),
        "weight": r.weights[who],
    })


class _Checks:
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
        values = _numbers(raw)
        self.drop(at & raw.isna().to_numpy(), field, "missing weight")
        self.drop(at & np.isnan(values), field, lambda i: f"weight {raw.iloc[i]!r} is not a number")
        self.drop(at & (values < 0), field, lambda i: f"negative weight {values[i]:g}")
        self.drop(at & np.isinf(values), field, "infinite weight")
        return values


def _text(column: pd.Series) -> pd.Series:
    """A column as stripped text, blank cells missing."""
    text = column.where(column.isna(), column.astype(str)).str.strip()
    return text.where(text != "")


def _codes(values) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (-1: missing) and the distinct values, in order of first appearance."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    return codes.astype(np.int64), np.asarray(uniques, dtype=object)


def _pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One code per distinct (a, b) of two code arrays (-1 where either is -1)."""
    key = np.where((a >= 0) & (b >= 0), a * (int(b.max(initial=0)) + 1) + b, -1)
    return _codes(pd.Series(key).where(key >= 0))[0]


# ---------------------------------------------------------------- the official release


def _survey_block(survey: Path, bad: BadRows) -> _Block:
    wave = re.search(r"W(\d+)$", survey.name)
    if wave is None:
        raise DataError(f"{survey}: folder name does not end in the wave number (_W<wave>)")
    weight_col = f"WEIGHT_W{wave.group(1)}"
    path = survey / "responses.csv"
    info = _read_release(survey / "info.csv", INFO_COLUMNS)
    metadata = _read_release(survey / "metadata.csv", METADATA_COLUMNS)
    frame = _read_release(path, (RELEASE_ID, weight_col), dtype={RELEASE_ID: str})
    checks = _Checks(str(path), len(frame), bad)

    ids = _text(frame[RELEASE_ID])
    checks.drop(ids.isna(), RELEASE_ID, "missing respondent id")
    checks.drop_later(_codes(ids)[0], None, RELEASE_ID, lambda i, first: f"duplicate of row {first + 1}")
    weights = checks.weights(frame[weight_col], weight_col, checks.ok.copy())
    keep = np.flatnonzero(checks.ok)

    groups = {
        str(row.key): [str(g) for g in list_literal(row.options, survey / "metadata.csv", i, "options") or []]
        for i, row in enumerate(metadata.itertuples(index=False), start=1)
    }
    groups = {key: known for key, known in groups.items() if key in frame.columns}
    block = _Block(
        file=str(path), id_field=RELEASE_ID, qids=[], questions=[], options=[], ordinal=[],
        ids=ids.to_numpy()[keep], rows=keep + 1, answers=np.zeros((len(keep), 0), np.int16),
        asked=np.zeros((len(keep), 0), bool), weights=weights[keep],
        attributes=frame.iloc[keep][list(groups)].reset_index(drop=True), groups=groups,
    )
    _release_questions(survey, info, frame.iloc[keep], keep + 1, bad, block)
    return block


def _read_release(path: Path, columns, **kwargs) -> pd.DataFrame:
    # Only empty cells are missing: "None" and "NA" are real answer texts in Pew surveys.
    return read_csv(path, columns, keep_default_na=False, na_values=[""], **kwargs)


def _release_questions(survey: Path, info: pd.DataFrame, responses: pd.DataFrame, rows: np.ndarray,
                       bad: BadRows, block: _Block) -> None:
    """Decode every question of info.csv into `block` (one that does not decode is reported);
    `rows` are the responses' row numbers in responses.csv."""
    answers, asked, seen = [], [], {}
    for i, q in enumerate(info.itertuples(index=False), start=1):
        key = str(q.key)
        if key in seen:
            bad.add(RowProblem(str(survey / "info.csv"), i, "key", f"duplicate of row {seen[key]}"))
            continue
        seen[key] = i
        decoded = _release_question(survey, i, q, responses, rows, bad)
        if decoded is not None:
            block.qids.append(key)
            block.questions.append(str(q.question))
            block.options.append(decoded[0])
            block.ordinal.append(decoded[1])
            answers.append(decoded[2])
            asked.append(decoded[3])
    if answers:
        block.answers, block.asked = np.stack(answers, axis=1), np.stack(asked, axis=1)


def _release_question(survey: Path, i: int, q, responses: pd.DataFrame, rows: np.ndarray, bad: BadRows):
    """info.csv row i's (options, ordinal, answers (R,) int16, asked (R,) bool), decoded as the
    group loader decodes it, or None (reported) when it does not decode."""
    info_path, path = survey / "info.csv", str(survey / "responses.csv")
    references = list_literal(q.references, info_path, i, "references") or []
    ordinal = list_literal(q.option_ordinal, info_path, i, "option_ordinal")
    options = [o for o in references if str(o).strip().lower() not in REFUSALS]
    problem = check_distribution(options, [1.0 / max(len(options), 1)] * len(options), ordinal)
    if problem is None and len({option_text(o) for o in options}) < len(options):
        problem = ("references", "two options have the same text")
    if problem is not None:
        bad.add(RowProblem(str(info_path), i, *problem))
        return None
    if q.key not in responses.columns:
        bad.add(RowProblem(path, 0, str(q.key), "question column missing"))
        return None
    column = responses[q.key]
    try:
        texts = answer_texts(column, getattr(q, "option_mapping", None))
    except ValueError as e:
        bad.add(RowProblem(str(info_path), i, "option_mapping", str(e)))
        return None
    present = column.notna().to_numpy()
    # a present cell decoded to nothing: a numeric code that option_mapping lacks
    for r in np.flatnonzero(present & texts.isna().to_numpy()):
        bad.add(RowProblem(path, int(rows[r]), str(q.key), f"answer code {float(column.iloc[r]):g} is not in option_mapping"))
    for r in np.flatnonzero((texts.notna() & ~texts.isin(references)).to_numpy()):
        bad.add(RowProblem(path, int(rows[r]), str(q.key), f"answer {texts.iloc[r]!r} is not an option"))
    answers = pd.Index(options, dtype=object).get_indexer(texts).astype(np.int16)
    return [option_text(o) for o in options], normalise_ordinal(ordinal, len(options)), answers, present


# ---------------------------------------------------------------- the per-respondent CSV


def _csv_block(path: Path, bad: BadRows) -> _Block:
    frame = _read_csv(path)
    checks = _Checks(str(path), len(frame), bad)
    who = _text(frame["respondent"])
    checks.drop(who.isna(), "respondent", "missing respondent id")
    text = _text(frame["question"])
    checks.drop(text.isna(), "question", "missing question text")
    options, option_codes = _csv_options(frame["options"], checks)
    ordinals, ordinal_codes = _csv_ordinal(frame.get("ordinal"), options, option_codes, checks)
    qid = _csv_qids(frame.get("qid"), text, options, option_codes, checks)

    q_codes = _codes(qid.where(checks.ok))[0]
    for field, codes in (("question", _codes(text)[0]), ("options", option_codes), ("ordinal", ordinal_codes)):
        checks.drop_later(q_codes, lambda i, j, c=codes: c[i] == c[j], field,
                          lambda i, first: f"differs from row {first + 1} of question {qid.iloc[i]}")
    r_codes = _codes(who.where(checks.ok))[0]
    checks.drop_later(_pairs(r_codes, q_codes), None, "respondent",
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
    codes = _codes(column)[0]
    if not numeric:
        return lambda i, j: codes[i] == codes[j]
    values = _numbers(column)
    return lambda i, j: (codes[i] == codes[j]) | (values[i] == values[j])


def _numbers(column: pd.Series) -> np.ndarray:
    """A column as float64, NaN where missing or not a number; each distinct cell parsed once."""
    codes, uniques = _codes(column)
    values = pd.to_numeric(pd.Series(uniques, dtype=object), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return np.append(values, np.nan)[codes]


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


def _csv_options(column: pd.Series, checks: _Checks) -> tuple[list[list[str]], np.ndarray]:
    """The distinct options lists (refusals removed, option_text applied) and each good row's
    index into them (-1 for a dropped row); rows with missing or malformed options are dropped."""
    codes, uniques = _codes(column)
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


def _csv_ordinal(column, options: list[list[str]], option_codes: np.ndarray, checks: _Checks):
    """The distinct ordinal scales (normalise_ordinal) and each good row's index into them; rows
    whose ordinal values are malformed or do not fit their options are dropped."""
    if column is None:
        return [None], np.where(checks.ok, 0, -1)
    codes, uniques = _codes(column)
    pair = _pairs(option_codes, codes + 1)  # ordinal code 0: an empty cell, unordered
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


def _csv_qids(column, text: pd.Series, options: list[list[str]], option_codes: np.ndarray, checks: _Checks) -> pd.Series:
    """Each row's question id: the `qid` column (rows without one are dropped), else
    question_id(question, options), computed once per distinct (question, options)."""
    if column is not None:
        qid = _text(column)
        checks.drop(qid.isna(), "qid", "missing qid")
        return qid
    text_codes, texts = _codes(text)
    pair = _pairs(text_codes, option_codes)
    good = np.flatnonzero(pair >= 0)
    _, at = np.unique(pair[good], return_index=True)
    ids = np.array([question_id(texts[text_codes[r]], options[option_codes[r]]) for r in good[at]] + [None], dtype=object)
    return pd.Series(ids[pair], index=text.index)


def _csv_answers(column: pd.Series, qid: pd.Series, options: list[list[str]], option_codes: np.ndarray,
                 checks: _Checks) -> np.ndarray:
    """Each row's chosen option index (-1: refused, empty or not an option); an answer that is not
    an option of its question is reported, and its row kept as asked."""
    answer = _text(column)
    answer_codes, texts = _codes(answer)
    pair = _pairs(option_codes, answer_codes)
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


def _csv_arrays(frame: pd.DataFrame, checks: _Checks, who: pd.Series, text: pd.Series, qid: pd.Series,
                options, option_codes, ordinals, ordinal_codes, chosen: np.ndarray, attributes: list[str]) -> _Block:
    """The good rows as a block: respondents in order of first appearance, questions by qid."""
    good = np.flatnonzero(checks.ok)
    r_codes, ids = _codes(who.iloc[good])
    qids = sorted(pd.unique(qid.iloc[good]))
    q_codes = pd.Index(qids).get_indexer(qid.iloc[good])
    _, heads = np.unique(r_codes, return_index=True)  # codes count up in order of first appearance
    _, q_heads = np.unique(q_codes, return_index=True)
    answers = np.full((len(ids), len(qids)), -1, dtype=np.int16)
    asked = np.zeros((len(ids), len(qids)), dtype=bool)
    answers[r_codes, q_codes] = chosen[good]
    asked[r_codes, q_codes] = True
    first, q_first = good[heads], good[q_heads]
    weights = _numbers(frame["weight"].iloc[first]) if "weight" in frame.columns else np.ones(len(ids))
    return _Block(
        file=checks.file, id_field="respondent", qids=qids,
        questions=[str(t) for t in text.iloc[q_first]],
        options=[options[c] for c in option_codes[q_first]],
        ordinal=[ordinals[c] for c in ordinal_codes[q_first]],
        ids=ids, rows=first + 1, answers=answers, asked=asked, weights=weights,
        attributes=frame.iloc[first][attributes].reset_index(drop=True), groups={},
    )


# ---------------------------------------------------------------- combining files


def _combine(blocks: list[_Block], dataset: str, source: str, bad: BadRows) -> Responses:
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
    codes, uniques = _codes(values)
    texts = [str(u) for u in uniques]
    categories = list(dict.fromkeys(known + sorted(set(texts) - set(known))))
    position = {c: k for k, c in enumerate(categories)}
    remap = np.array([position[t] for t in texts] + [-1], dtype=np.int64)
    return pd.Categorical.from_codes(remap[codes], categories)
