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
    """`table` with its groups labelled, plus the test groups `test_groups` taken from another
    survey `other` (their rows in `table`, if any, are dropped: the named groups are the other
    survey's). A question of the other survey that shares an id but not the options with one
    of `table` is a different question: its id gets the other survey's name."""
    table = table.assign(label=group_labels(table))
    other = other.assign(label=group_labels(other))
    tests = resolve_groups(other, test_groups)
    other = other[other["label"].isin(tests)]
    options = table.drop_duplicates("qid").set_index("qid")["options"].map(tuple)
    theirs = other["options"].map(tuple)
    clash = other["qid"].isin(options.index) & (theirs != other["qid"].map(options))
    other = other.assign(qid=other["qid"].where(~clash, other_name + "/" + other["qid"]))
    return pd.concat([table[~table["label"].isin(tests)], other], ignore_index=True)
