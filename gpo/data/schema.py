"""The canonical survey table every loader produces, and the row checks they share.

One row per (question, group): the group's distribution over the question's options.
Policy for malformed rows (documented in the README): each is reported with its file,
row and reason; `on_bad_rows="skip"` drops it and goes on, `"error"` stops at the first.
Shares that sum to within `SUM_TOLERANCE` of one are renormalised (upstream files round
to three decimals); anything further off is malformed.
"""

from __future__ import annotations

import ast
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from gpo.errors import DataError

log = logging.getLogger(__name__)

COLUMNS = [
    "dataset",  # "opinionqa", "globalopinionqa", "synthetic", ...
    "qid",  # question id, unique within the dataset
    "question",  # question text
    "options",  # list[str], refusals removed
    "ordinal",  # list[float] per option (NaN: a non-ordinal option such as "Not sure"), or None: unordered
    "attribute",  # group attribute ("POLPARTY", "COUNTRY", ...)
    "group",  # group name within its attribute
    "distribution",  # list[float], the group's shares of the options, sums to 1
    "n",  # respondent count (float, NaN when unknown)
]

SUM_TOLERANCE = 0.02


@dataclass(frozen=True)
class RowProblem:
    file: str
    row: int  # 1-based line or data row number in `file`
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: row {self.row}: field '{self.field}': {self.reason}"


class BadRows:
    """Collects malformed rows under a policy; a loader calls `add` for each one."""

    def __init__(self, policy: str = "skip"):
        if policy not in ("skip", "error"):
            raise DataError(f"on_bad_rows must be 'skip' or 'error', not {policy!r}")
        self.policy = policy
        self.problems: list[RowProblem] = []

    def add(self, problem: RowProblem) -> None:
        if self.policy == "error":
            raise DataError(str(problem))
        self.problems.append(problem)

    def report(self, show: int = 3) -> None:
        if not self.problems:
            return
        files = sorted({p.file for p in self.problems})
        log.warning("skipped %d malformed row(s) in %s (policy on_bad_rows=skip), e.g.:",
                    len(self.problems), ", ".join(files))
        for p in self.problems[:show]:
            log.warning("  %s", p)

    def records(self) -> list[dict]:
        return [vars(p) for p in self.problems]


def read_csv(path: Path, columns=(), **kwargs) -> pd.DataFrame:
    """A CSV file with the given columns, or one error naming the file."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        frame = pd.read_csv(path, encoding="utf-8", **kwargs)
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise DataError(f"{path}: not a readable CSV file ({str(e).strip().splitlines()[0]})") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}")
    return frame


def literal(text):
    """A Python literal written as text (upstream CSVs store lists and dicts this way);
    ValueError when the text is not one."""
    if not isinstance(text, str):
        return text
    try:
        return ast.literal_eval(text)
    except (SyntaxError, TypeError, MemoryError, RecursionError) as e:
        raise ValueError(str(e)) from None


def check_distribution(options, distribution, ordinal) -> tuple[str, str] | None:
    """The first problem with one row's options/shares/ordinals as (field, reason), or None."""
    if not isinstance(options, (list, tuple)) or len(options) == 0:
        return "options", "no options"
    if any(not isinstance(o, (str, int, float)) or not option_text(o) for o in options):
        return "options", "an option text is empty"
    if not isinstance(distribution, (list, tuple)):
        return "distribution", "not a list of shares"
    if len(distribution) != len(options):
        return "distribution", f"{len(options)} options but {len(distribution)} shares"
    shares = numbers(distribution)
    if shares is None:
        return "distribution", "a share is not a number"
    if any(math.isnan(s) or s < 0 for s in shares):
        return "distribution", "negative or NaN share"
    total = sum(shares)
    if abs(total - 1.0) > SUM_TOLERANCE:
        return "distribution", f"shares sum to {total:.4f}, not 1"
    if ordinal is not None:
        # fewer values than options: the trailing options ("Not sure", "Don't know") are not on the scale
        if not isinstance(ordinal, (list, tuple)) or len(ordinal) > len(options):
            n = len(ordinal) if isinstance(ordinal, (list, tuple)) else "no"
            return "ordinal", f"{len(options)} options but {n} ordinal values"
        values = numbers(ordinal)
        if values is None or not all(map(math.isfinite, values)):
            return "ordinal", "an ordinal value is missing or not finite"
    return None


def numbers(values) -> list[float] | None:
    """`values` as floats, or None if one is not a number (None, a list, a word, too large)."""
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError, OverflowError):
        return None


def option_text(option) -> str:
    """Options are text; numeric scale points (0.0, 1.0, ...) are written as numbers ("0", "1")."""
    if isinstance(option, bool) or not isinstance(option, (int, float)):
        return option.strip() if isinstance(option, str) else str(option)
    return str(option) if isinstance(option, int) else f"{option:g}"  # an int of any size; floats as 0, 0.5, 1e+06


def normalise_ordinal(ordinal, n_options: int) -> list[float] | None:
    """One ordinal value per option as floats, NaN for the trailing non-ordinal options; None
    when the values cannot order the options (fewer than two distinct ones)."""
    if ordinal is None:
        return None
    values = [float(o) for o in ordinal]
    return None if len(set(values)) < 2 else values + [math.nan] * (n_options - len(values))


def make_row(dataset, qid, question, options, ordinal, attribute, group, distribution, n) -> dict:
    total = float(sum(float(s) for s in distribution))
    return {
        "dataset": dataset,
        "qid": str(qid),
        "question": str(question),
        "options": [option_text(o) for o in options],
        "ordinal": normalise_ordinal(ordinal, len(options)),
        "attribute": str(attribute),
        "group": str(group),
        "distribution": [float(s) / total for s in distribution],
        "n": float("nan") if n is None else float(n),
    }


def to_frame(rows: list[dict], source: str, bad: BadRows) -> pd.DataFrame:
    if not rows:
        example = f"; e.g. {bad.problems[0]}" if bad.problems else ""
        raise DataError(f"{source}: no valid rows ({len(bad.problems)} malformed{example})")
    return pd.DataFrame(rows, columns=COLUMNS)


def finish(rows: list[dict], row_numbers: list[int], source: str, bad: BadRows) -> pd.DataFrame:
    """The loaded table, consistency-checked. Skipped rows are logged and kept in
    attrs["bad_rows"] as records (file, row, field, reason), which parquet can store."""
    table = check_consistent(to_frame(rows, source, bad), row_numbers, source, bad)
    bad.report()
    table.attrs["bad_rows"] = bad.records()
    return table


def bad_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows a loader skipped (file, row, field, reason), one per problem."""
    return pd.DataFrame(table.attrs.get("bad_rows", []), columns=["file", "row", "field", "reason"])


def check_consistent(table: pd.DataFrame, row_numbers: list[int], source: str, bad: BadRows) -> pd.DataFrame:
    """Drop rows whose options disagree with the question's first row, and duplicate rows.

    Every group of a question must share its options, else points would not line up.
    `row_numbers[i]` is where table row i came from in `source`.
    """
    first: dict[str, tuple] = {}
    seen: dict[tuple, int] = {}
    keep = []
    for i, (qid, options, attribute, group) in enumerate(
        zip(table["qid"], table["options"], table["attribute"], table["group"])
    ):
        key = (qid, attribute, group)
        opts = tuple(options)
        if qid in first and first[qid][0] != opts:
            bad.add(RowProblem(source, row_numbers[i], "options", f"differ from row {first[qid][1]} of question {qid}"))
        elif key in seen:
            bad.add(RowProblem(source, row_numbers[i], "group", f"duplicate of row {seen[key]} ({attribute}: {group})"))
        else:
            first.setdefault(qid, (opts, row_numbers[i]))
            seen[key] = row_numbers[i]
            keep.append(i)
    return table.iloc[keep].reset_index(drop=True)
