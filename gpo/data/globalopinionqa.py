"""The official GlobalOpinionQA CSV (Anthropic/llm_global_opinions).

Columns: `question`; `selections`, a string holding `{country: [shares...]}` (written by
Python as `defaultdict(<class 'list'>, {...})`); `options`, a Python list as a string;
`source`. Rows are numbered from 1 at the first data row (the header is row 0).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from gpo.data.jsonl import question_id
from gpo.data.schema import BadRows, RowProblem, check_distribution, finish, literal, make_row, read_csv

COLUMNS = ("question", "selections", "options")
_DEFAULTDICT = re.compile(r"^\s*defaultdict\(\s*<class '\w+'>\s*,\s*(.*)\)\s*$", re.S)


def parse_selections(text: str) -> dict:
    match = _DEFAULTDICT.match(text)
    value = literal(match.group(1) if match else text)
    if not isinstance(value, dict):
        raise ValueError("not a mapping of country to shares")
    return value


def load_globalopinionqa_csv(path: str | Path, on_bad_rows: str = "skip") -> pd.DataFrame:
    path = Path(path)
    frame = read_csv(path, COLUMNS, dtype=str, keep_default_na=False)
    bad, rows, at, source = BadRows(on_bad_rows), [], [], str(path)
    for i, record in enumerate(frame.itertuples(index=False), start=1):
        try:
            options = literal(record.options)
        except ValueError:
            bad.add(RowProblem(source, i, "options", "not a Python list literal"))
            continue
        try:
            selections = parse_selections(record.selections)
        except ValueError:
            bad.add(RowProblem(source, i, "selections", "not a {country: [shares]} literal"))
            continue
        if not record.question.strip():
            bad.add(RowProblem(source, i, "question", "empty"))
            continue
        for country, shares in selections.items():
            problem = check_distribution(options, shares, None)
            if problem is None and (not isinstance(country, str) or not country.strip()):
                problem = "country", f"{country!r} is not a country name"
            if problem is not None:
                bad.add(RowProblem(source, i, f"{problem[0]} ({country})", problem[1]))
                continue
            qid = question_id(record.question, options)
            rows.append(make_row("globalopinionqa", qid, record.question, options, None, "COUNTRY", country, shares, None))
            at.append(i)
    return finish(rows, at, source, bad)
