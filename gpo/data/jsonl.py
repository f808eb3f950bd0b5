"""The long JSONL format: one JSON object per (question, group), optionally gzipped.

Two flavours, told apart by their fields (see ../shared/data/README.md):
- OpinionQA: qkey, question, options, option_ordinal, attribute, group, distribution, n;
- GlobalOpinionQA: question, country, options, distribution (no question id: one is made
  from the question text and its options, so the same text with other options is another
  question).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pandas as pd

from gpo.data.schema import BadRows, RowProblem, check_distribution, finish, make_row, option_text
from gpo.errors import DataError

OPINIONQA_FIELDS = ("qkey", "question", "options", "option_ordinal", "attribute", "group", "distribution")
GLOBAL_FIELDS = ("question", "country", "options", "distribution")


def question_id(question: str, options) -> str:
    digest = hashlib.sha1("\x1f".join([question, *map(option_text, options)]).encode()).hexdigest()
    return f"q{digest[:12]}"


def _open(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _flavour(record: dict, path: Path) -> str:
    if "qkey" in record:
        missing = [f for f in OPINIONQA_FIELDS if f not in record]
        flavour = "opinionqa"
    elif "country" in record:
        missing = [f for f in GLOBAL_FIELDS if f not in record]
        flavour = "globalopinionqa"
    else:
        raise DataError(
            f"{path}: row 1: expected OpinionQA fields {list(OPINIONQA_FIELDS)} "
            f"or GlobalOpinionQA fields {list(GLOBAL_FIELDS)}, got {sorted(record)}"
        )
    if missing:
        raise DataError(f"{path}: row 1: missing field(s) {missing} of the {flavour} JSONL format")
    return flavour


def load_jsonl(path: str | Path, on_bad_rows: str = "skip") -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    bad = BadRows(on_bad_rows)
    rows, at, flavour = [], [], None
    with _open(path) as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                bad.add(RowProblem(str(path), line_no, "json", f"not valid JSON ({e.msg})"))
                continue
            flavour = flavour or _flavour(record, path)
            row = _row(record, flavour, str(path), line_no, bad)
            if row is not None:
                rows.append(row)
                at.append(line_no)
    return finish(rows, at, str(path), bad)


def _row(record: dict, flavour: str, source: str, line_no: int, bad: BadRows) -> dict | None:
    fields = OPINIONQA_FIELDS if flavour == "opinionqa" else GLOBAL_FIELDS
    missing = [f for f in fields if f not in record]
    if missing:
        bad.add(RowProblem(source, line_no, missing[0], "missing"))
        return None
    group_field = "group" if flavour == "opinionqa" else "country"
    if not isinstance(record[group_field], str) or not record[group_field].strip():
        bad.add(RowProblem(source, line_no, group_field, "empty or unknown group"))
        return None
    ordinal = record.get("option_ordinal")
    problem = check_distribution(record["options"], record["distribution"], ordinal)
    if problem is not None:
        bad.add(RowProblem(source, line_no, *problem))
        return None
    if flavour == "opinionqa":
        return make_row(
            "opinionqa", record["qkey"], record["question"], record["options"], ordinal,
            record["attribute"], record["group"], record["distribution"], record.get("n"),
        )
    return make_row(
        "globalopinionqa", question_id(record["question"], record["options"]), record["question"],
        record["options"], None, "COUNTRY", record["country"], record["distribution"], None,
    )
