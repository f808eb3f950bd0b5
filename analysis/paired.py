"""Paired comparisons of methods scored on the same episodes, and the reference they are
compared with.

Every method is scored on the same test groups of the same units (seed x group split), so the
difference of two methods is taken per (unit, group) before any averaging: the groups' shared
difficulty cancels, and a 0.002 difference can be told from noise that is 0.02 wide between
groups. Intervals come from the two-level bootstrap of `aggregate.bootstrap` (units, then
groups within them).

The reference a method is compared with is the best baseline *on the validation groups*
(rows with role "val"): choosing it on the test groups would pick whichever baseline was
luckiest there and flatter it. Results without validation rows fall back to the mean prior.
"""

from __future__ import annotations

import pandas as pd

from gpo.analysis.aggregate import UNIT, bootstrap

FALLBACK = "mean"
CHOSEN_ON_VAL = "the best baseline on the"  # ... 2 validation groups (how few, the reader should see)
CHOSEN_BY_FALLBACK = "the mean prior: these results have no validation rows to choose a best baseline on"


def is_gpo(rows: pd.DataFrame) -> pd.Series:
    return rows["family"] == "gpo"


def split_roles(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(test rows, validation rows). Results written before validation rows existed are all test rows."""
    if "role" not in rows:
        return rows, rows.iloc[:0]
    val = rows["role"] == "val"
    return rows[~val], rows[val]


def differences(rows: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Per (unit, task): the score of `a` minus `b` on the test rows, where both were scored."""
    rows, _ = split_roles(rows)
    keys = [c for c in UNIT if c in rows] + ["task"]
    wide = rows[rows.method.isin([a, b])].pivot_table(index=keys, columns="method", values="score")
    if not {a, b} <= set(wide.columns):
        raise ValueError(f"no test rows scored both {a} and {b}")
    return (wide[a] - wide[b]).dropna().rename("score").reset_index()


def paired(rows: pd.DataFrame, a: str, b: str, boots: int = 2000, seed: int = 0) -> dict:
    """The mean difference a - b over units (of each unit's mean over groups) on the test rows,
    with its two-level bootstrap 95% interval: {"mean", "lo", "hi", "units", "groups"}."""
    out = bootstrap(differences(rows, a, b), boots, seed)
    return {k: out[k] for k in ("mean", "lo", "hi", "units", "groups")}


def choose_reference(rows: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per cell of `by`: the reference baseline and how it was chosen (columns `reference`,
    `chosen_on`). The best baseline is the one with the highest mean over units of the mean
    over validation groups; test rows are never looked at. Without validation rows: the mean
    prior, or no row at all if the results have no `mean` either."""
    tests, val = split_roles(rows)
    val = val[~is_gpo(val)]
    task = "respondent" if "unit" in rows and (rows["unit"] == "respondent").any() else "group"
    units = [c for c in UNIT if c in val]
    scores = (val.groupby([*by, "method", *units])["score"].mean()
              .groupby([*by, "method"]).mean().reset_index())
    best = scores.loc[scores.groupby(by)["score"].idxmax()] if len(scores) else scores
    best = {tuple(row[by]): row["method"] for _, row in best.iterrows()}
    n_groups = val.groupby([*by, *units])["task"].nunique().groupby(by).mean().round().astype(int) if len(val) else {}
    out = []
    for key, cell in tests.groupby(by):
        key = key if isinstance(key, tuple) else (key,)
        if key in best:
            n = n_groups[key[0] if len(key) == 1 else key]
            out.append({**dict(zip(by, key)), "reference": best[key],
                        "chosen_on": f"{CHOSEN_ON_VAL} {n} validation {task}{'s' if n != 1 else ''}"})
        elif (cell.method == FALLBACK).any():
            out.append({**dict(zip(by, key)), "reference": FALLBACK, "chosen_on": CHOSEN_BY_FALLBACK})
    return pd.DataFrame(out, columns=[*by, "reference", "chosen_on"])


def against_reference(rows: pd.DataFrame, references: pd.DataFrame, by: list[str], boots: int = 2000) -> pd.DataFrame:
    """Every method but the reference, paired against its cell's reference on the test rows:
    one row per (cell, method) with `mean`, `lo`, `hi` of method - reference."""
    tests, _ = split_roles(rows)
    family = dict(zip(tests.method, tests.family))
    out = []
    for ref in references.itertuples(index=False):
        key = {c: getattr(ref, c) for c in by}
        cell = tests[(tests[by] == pd.Series(key)).all(axis=1)]
        for method in sorted(set(cell.method) - {ref.reference}):
            out.append({**key, "method": method, "family": family[method], "reference": ref.reference,
                        "chosen_on": ref.chosen_on, **paired(cell, method, ref.reference, boots)})
    return pd.DataFrame(out, columns=[*by, "method", "family", "reference", "chosen_on", "mean", "lo", "hi", "units", "groups"])
