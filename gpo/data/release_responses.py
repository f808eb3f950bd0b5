"""Per-respondent answers from the official OpinionQA release (its layout: gpo/data/opinionqa.py):
every survey folder with a responses.csv. A row of responses.csv is a respondent (`QKEY`); a
question column holds an answer text or Pew's numeric code, decoded by info.csv's
`option_mapping` exactly as the group loader decodes it, and an empty cell means not asked.
Attributes are the keys of metadata.csv that are columns of responses.csv; the weight is
`WEIGHT_W<wave>`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from gpo.data.opinionqa import INFO_COLUMNS, METADATA_COLUMNS, REFUSALS, answer_texts, list_literal
from gpo.data.responses import Block, Checks, factorize, stripped
from gpo.data.schema import BadRows, RowProblem, check_distribution, normalise_ordinal, option_text, read_csv
from gpo.errors import DataError

RELEASE_ID = "QKEY"


def release_block(survey: Path, bad: BadRows) -> Block:
    wave = re.search(r"W(\d+)$", survey.name)
    if wave is None:
        raise DataError(f"{survey}: folder name does not end in the wave number (_W<wave>)")
    weight_col = f"WEIGHT_W{wave.group(1)}"
    path = survey / "responses.csv"
    info = _read_release(survey / "info.csv", INFO_COLUMNS)
    metadata = _read_release(survey / "metadata.csv", METADATA_COLUMNS)
    frame = _read_release(path, (RELEASE_ID, weight_col), dtype={RELEASE_ID: str})
    checks = Checks(str(path), len(frame), bad)

    ids = stripped(frame[RELEASE_ID])
    checks.drop(ids.isna(), RELEASE_ID, "missing respondent id")
    checks.drop_later(factorize(ids)[0], None, RELEASE_ID, lambda i, first: f"duplicate of row {first + 1}")
    weights = checks.weights(frame[weight_col], weight_col, checks.ok.copy())
    keep = np.flatnonzero(checks.ok)

    groups = {
        str(row.key): [str(g) for g in list_literal(row.options, survey / "metadata.csv", i, "options") or []]
        for i, row in enumerate(metadata.itertuples(index=False), start=1)
    }
    groups = {key: known for key, known in groups.items() if key in frame.columns}
    block = Block(
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
                       bad: BadRows, block: Block) -> None:
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


