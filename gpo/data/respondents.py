"""Per-respondent answers as arrays: each survey respondent can be a task of its own.

`load_responses` reads an OpinionQA release folder (gpo/data/release_responses.py) or a
per-respondent CSV (gpo/data/csv_responses.py); several surveys of a release are combined, and
their respondent ids are then "<survey folder>/<QKEY>".

Rows are numbered from 1 at the first data row of their file. Bad input is reported as a
RowProblem (file, row, field, reason) under the `on_bad_rows` policy, as the group loaders do:
an answer that is not an option (or a code outside option_mapping) is dropped; a respondent
with a missing id, a missing, negative or non-numeric weight, or no answer left is dropped (a
weight of 0 is kept, with a warning: the respondent counts in no weighted share or mean; all of
them 0 is an error); a duplicate respondent (in the CSV: a duplicate (respondent, question)
row) is dropped in favour of the first; CSV rows whose question fields or respondent fields
differ from the first row of their question or respondent are dropped.

Nothing loops over answers or respondents in Python: each step is one numpy or pandas
operation over a column; Python loops run over questions, columns, distinct cell texts (each
options list is parsed once) and reported problems.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from gpo.data.csv_responses import csv_block
from gpo.data.opinionqa import survey_dirs
from gpo.data.release_responses import release_block
from gpo.data.responses import Responses, combine
from gpo.data.schema import BadRows
from gpo.errors import DataError


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
        blocks = [release_block(d, bad) for d in dirs]
        if len(blocks) > 1:
            for d, block in zip(dirs, blocks):
                block.ids = f"{d.name}/" + block.ids.astype(object)
        return combine(blocks, "opinionqa", str(path), bad)
    if path.name.lower().endswith((".csv", ".csv.gz")):
        dataset = re.sub(r"\.csv(\.gz)?$", "", path.name, flags=re.IGNORECASE)
        return combine([csv_block(path, bad)], dataset, str(path), bad)
    raise DataError(f"{path}: unknown per-respondent format (expected an OpinionQA release folder, .csv or .csv.gz)")


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


