"""Transformations of the canonical table: robustness protocols and combined surveys."""

from __future__ import annotations

import pandas as pd

from gpo.data.survey import group_labels, resolve_groups
from gpo.prompts import letter, question_block


def options_as_letters(table: pd.DataFrame) -> pd.DataFrame:
    """Every question's options become "A", "B", ... and their wording moves into the question
    text: a survey whose answer options say nothing by themselves (the letters-only protocol)."""
    letters = table["options"].map(lambda options: [letter(i) for i in range(len(options))])
    text = [question_block(q, list(o)) for q, o in zip(table["question"], table["options"])]
    return table.assign(question=text, options=letters)


def with_test_survey(table: pd.DataFrame, other: pd.DataFrame, test_groups, other_name: str) -> pd.DataFrame:
    """`table` with its groups labelled, plus the test groups `test_groups` (a preset, "all" or
    labels, of the other survey's groups) taken from another survey `other`, their rows marked
    in column `test_source`. A group of the other survey named like one of `table` is labelled
    "<other_name>/<label>", so every group of the other survey can be a test group while the
    groups of `table` keep their roles; a question of the other survey that shares an id but
    not the options with one of `table` is a different question, and its id gets the same prefix."""
    table = table.assign(label=group_labels(table), test_source=False)
    other = other.assign(label=group_labels(other))
    other = other[other["label"].isin(resolve_groups(other, test_groups))]
    other = other.assign(label=other["label"].where(~other["label"].isin(set(table["label"])), other_name + "/" + other["label"]),
                         test_source=True)
    options = table.drop_duplicates("qid").set_index("qid")["options"].map(tuple)
    theirs = other["options"].map(tuple)
    clash = other["qid"].isin(options.index) & (theirs != other["qid"].map(options))
    other = other.assign(qid=other["qid"].where(~clash, other_name + "/" + other["qid"]))
    return pd.concat([table, other], ignore_index=True)
