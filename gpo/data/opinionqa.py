"""The official OpinionQA release: `human_resp/<survey>/{info.csv, metadata.csv, responses.csv}`.

- info.csv: `key`, `question`, `references` (options as a Python list literal, refusal
  included), `option_ordinal` (one value per non-refusal option), optionally
  `option_mapping` (numeric answer code -> option text).
- metadata.csv: `key` (a demographic attribute, also a column of responses.csv) and
  `options` (its groups as a Python list literal).
- responses.csv: one row per respondent, one column per question key (answer text or
  numeric code), the attribute columns, and the survey weight `WEIGHT_W<wave>`.

A group's distribution is the survey-weighted share of each non-refusal option among the
group's respondents who gave a non-refusal answer; `n` counts those respondents.
Rows of responses.csv are numbered from 1 at the first respondent.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from gpo.data.schema import BadRows, RowProblem, check_distribution, finish, literal, make_row, numbers, read_csv
from gpo.errors import DataError

REFUSALS = {"refused"}
INFO_COLUMNS = ("key", "question", "references", "option_ordinal")
METADATA_COLUMNS = ("key", "options")


def survey_dirs(root: Path) -> list[Path]:
    """Survey folders under `root` (a release root, its human_resp/, or one survey folder)."""
    if (root / "info.csv").is_file():
        return [root]
    base = root / "human_resp" if (root / "human_resp").is_dir() else root
    dirs = sorted(d for d in base.iterdir() if (d / "info.csv").is_file()) if base.is_dir() else []
    if not dirs:
        raise DataError(f"{root}: no <survey>/info.csv found (expected the OpinionQA human_resp/ layout)")
    return dirs


def _read_csv(path: Path, columns) -> pd.DataFrame:
    # Only empty cells are missing: "None" and "NA" are real answer texts in Pew surveys.
    return read_csv(path, columns, keep_default_na=False, na_values=[""])


def list_literal(text, path: Path, row: int, field: str) -> list | None:
    """A list literal of info.csv / metadata.csv (None stays None: no ordinal scale)."""
    try:
        value = literal(text)
    except ValueError:
        value = text
    if value is None or isinstance(value, list):
        return value
    raise DataError(f"{path}: row {row}: field '{field}': not a Python list literal: {str(text)[:80]!r}")


def load_opinionqa_release(root: str | Path, on_bad_rows: str = "skip") -> pd.DataFrame:
    root = Path(root)
    bad, rows, at = BadRows(on_bad_rows), [], []
    dirs = [d for d in survey_dirs(root) if (d / "responses.csv").is_file()]
    if not dirs:
        raise DataError(f"{root}: no responses.csv in any survey folder (the official release has one per wave)")
    for survey in dirs:
        survey_rows = _survey_rows(survey, bad)
        rows += [row for row, _ in survey_rows]
        at += [info_row for _, info_row in survey_rows]
    return finish(rows, at, str(root), bad)


def _survey_rows(survey: Path, bad: BadRows) -> list[tuple[dict, int]]:
    """(row, its info.csv row number) for every (question, group) of one survey."""
    wave = re.search(r"W(\d+)$", survey.name)
    if wave is None:
        raise DataError(f"{survey}: folder name does not end in the wave number (_W<wave>)")
    weight_col = f"WEIGHT_W{wave.group(1)}"
    info = _read_csv(survey / "info.csv", INFO_COLUMNS)
    metadata = _read_csv(survey / "metadata.csv", METADATA_COLUMNS)
    responses_path = survey / "responses.csv"
    attributes = {
        row.key: list_literal(row.options, survey / "metadata.csv", i, "options") or []
        for i, row in enumerate(metadata.itertuples(index=False), start=1)
    }
    needed = [weight_col, *attributes]
    responses = _read_csv(responses_path, needed)
    weights = pd.to_numeric(responses[weight_col], errors="coerce")
    for i in np.flatnonzero(~(weights >= 0)):  # NaN compares False too
        bad.add(RowProblem(str(responses_path), int(i) + 1, weight_col, "negative or NaN weight"))
    ok_weight = weights >= 0

    rows = []
    for i, q in enumerate(info.itertuples(index=False), start=1):
        references = list_literal(q.references, survey / "info.csv", i, "references") or []
        ordinal = list_literal(q.option_ordinal, survey / "info.csv", i, "option_ordinal")
        options = [o for o in references if str(o).strip().lower() not in REFUSALS]
        problem = check_distribution(options, [1.0 / max(len(options), 1)] * len(options), ordinal)
        if problem is not None:
            bad.add(RowProblem(str(survey / "info.csv"), i, *problem))
            continue
        if q.key not in responses.columns:
            bad.add(RowProblem(str(responses_path), 0, q.key, "question column missing"))
            continue
        try:
            answers = answer_texts(responses[q.key], getattr(q, "option_mapping", None))
        except ValueError as e:
            bad.add(RowProblem(str(survey / "info.csv"), i, "option_mapping", str(e)))
            continue
        # an answer given (a non-empty cell) that is no option, or a code option_mapping does not know
        unknown = responses[q.key].notna() & ~answers.isin(references)
        for r in np.flatnonzero(unknown.to_numpy()):
            bad.add(RowProblem(str(responses_path), int(r) + 1, q.key, f"answer {str(responses[q.key].iloc[r])!r} is not an option"))
        valid = answers.isin(options) & ok_weight
        for attribute, groups in attributes.items():
            table = (
                weights[valid]
                .groupby([responses.loc[valid, attribute], answers[valid]])
                .agg(["sum", "count"])
            )
            for group in groups:
                if group not in table.index.get_level_values(0):
                    continue
                per_option = table.loc[group].reindex(options, fill_value=0.0)
                total = per_option["sum"].sum()
                if total <= 0:
                    continue
                rows.append((make_row(
                    "opinionqa", q.key, q.question, options, ordinal, attribute, group,
                    (per_option["sum"] / total).tolist(), float(per_option["count"].sum()),
                ), i))
    return rows


def answer_texts(column: pd.Series, option_mapping) -> pd.Series:
    """Answers as option texts: a cell holding a number is a code, mapped through info.csv's
    option_mapping (when the question has one); any other cell is the option's text itself.
    Cell by cell, so one text among codes (or one code among texts) costs nothing but itself."""
    texts = column.astype("object").where(column.notna())
    if not isinstance(option_mapping, str) or not option_mapping:
        return texts
    mapping = literal(option_mapping)
    codes = numbers(mapping) if isinstance(mapping, dict) else None
    if codes is None:
        raise ValueError("not a {numeric code: option text} literal")
    number = pd.to_numeric(column, errors="coerce")
    return texts.where(number.isna(), number.map(dict(zip(codes, mapping.values()))))
