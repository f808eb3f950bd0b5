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
import zlib
from pathlib import Path

import pandas as pd

from gpo.data.schema import BadRows, RowProblem, check_distribution, finish, make_row, numbers, option_text
from gpo.errors import DataError

OPINIONQA_FIELDS = ("qkey", "question", "options", "option_ordinal", "attribute", "group", "distribution")
GLOBAL_FIELDS = ("question", "country", "options", "distribution")


def question_id(question: str, options) -> str:
    digest = hashlib.sha1("\x1f".join([question, *map(option_text, options)]).encode()).hexdigest()
    return f"q{digest[:12]}"


def lines(path: Path):
    """(line number, text) of every non-empty line. Bytes are decoded line by line, so a line
    that is not UTF-8 is one bad row; a stream that cannot be read (a truncated or corrupt gzip
    file, a file named .gz that is not gzip) is one error naming the file and the line."""
    opener = gzip.open if path.suffix == ".gz" else open
    line_no = 0
    try:
        with opener(path, "rb") as f:
            for line_no, raw in enumerate(f, start=1):
                if raw.strip():
                    yield line_no, raw
    except (EOFError, OSError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: unreadable after line {line_no} ({type(e).__name__}: {e})") from None


def _flavour(record: dict, path: Path, line_no: int) -> str:
    if "qkey" in record:
        missing = [f for f in OPINIONQA_FIELDS if f not in record]
        flavour = "opinionqa"
    elif "country" in record:
        missing = [f for f in GLOBAL_FIELDS if f not in record]
        flavour = "globalopinionqa"
    else:
        raise DataError(
            f"{path}: row {line_no}: expected OpinionQA fields {list(OPINIONQA_FIELDS)} "
            f"or GlobalOpinionQA fields {list(GLOBAL_FIELDS)}, got {sorted(record)}"
        )
    if missing:
        raise DataError(f"{path}: row {line_no}: missing field(s) {missing} of the {flavour} JSONL format")
    return flavour


def load_jsonl(path: str | Path, on_bad_rows: str = "skip") -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    bad = BadRows(on_bad_rows)
    rows, at, flavour = [], [], None
    for line_no, raw in lines(path):
        try:
            record = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            bad.add(RowProblem(str(path), line_no, "json", "not UTF-8 text"))
            continue
        except json.JSONDecodeError as e:
            bad.add(RowProblem(str(path), line_no, "json", f"not valid JSON ({e.msg})"))
            continue
        if not isinstance(record, dict):
            bad.add(RowProblem(str(path), line_no, "json", f"a JSON {type(record).__name__}, not an object"))
            continue
        flavour = flavour or _flavour(record, path, line_no)  # the first object decides the format
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
    texts = ("qkey", "question", "attribute") if flavour == "opinionqa" else ("question",)
    for name in texts:
        if not isinstance(record[name], (str, int)) or isinstance(record[name], bool) or not str(record[name]).strip():
            bad.add(RowProblem(source, line_no, name, "empty or not text"))
            return None
    if record.get("n") is not None and numbers([record["n"]]) is None:
        bad.add(RowProblem(source, line_no, "n", "not a number"))
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
