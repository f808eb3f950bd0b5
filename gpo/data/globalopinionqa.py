"""The official GlobalOpinionQA CSV (Anthropic/llm_global_opinions).

Columns: `question`; `selections`, a string holding `{country: [shares...]}` (written by
Python as `defaultdict(<class 'list'>, {...})`); `options`, a Python list as a string;
`source`. Rows are numbered from 1 at the first data row (the header is row 0).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pandas as pd

from gpo.data.jsonl import question_id
from gpo.data.schema import BadRows, RowProblem, check_distribution, finish, make_row
from gpo.errors import DataError

COLUMNS = ("question", "selections", "options")
_DEFAULTDICT = re.compile(r"^\s*defaultdict\(\s*<class '\w+'>\s*,\s*(.*)\)\s*$", re.S)


def parse_selections(text: str) -> dict:
    match = _DEFAULTDICT.match(text)
    value = ast.literal_eval(match.group(1) if match else text)
    if not isinstance(value, dict):
        raise ValueError("not a mapping of country to shares")
    return value


def load_globalopinionqa_csv(path: str | Path, on_bad_rows: str = "skip") -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; expected {list(COLUMNS)} (+ source)")
    bad, rows, at, source = BadRows(on_bad_rows), [], [], str(path)
    for i, record in enumerate(frame.itertuples(index=False), start=1):
        try:
            options = ast.literal_eval(record.options)
        except (ValueError, SyntaxError):
            bad.add(RowProblem(source, i, "options", "not a Python list literal"))
            continue
        try:
            selections = parse_selections(record.selections)
        except (ValueError, SyntaxError):
            bad.add(RowProblem(source, i, "selections", "not a {country: [shares]} literal"))
            continue
        qid = question_id(record.question, options) if isinstance(options, list) else None
        for country, shares in selections.items():
            problem = check_distribution(options, shares, None)
            if problem is not None:
                bad.add(RowProblem(source, i, f"{problem[0]} ({country})", problem[1]))
                continue
            rows.append(make_row("globalopinionqa", qid, record.question, options, None, "COUNTRY", country, shares, None))
            at.append(i)
    return finish(rows, at, source, bad)
