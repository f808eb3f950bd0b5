"""What a results table holds (results.parquet of a run, study.parquet of a study), and reading
one written by any version of gpo-study.

A row is one method's score on one task (column `task`: a group's name or a person's id) at one
k. What the method is comes from its columns (family, variant, shrunk, ensemble), never from its
name. The schema version travels in the parquet metadata; older files are read as today's:
version 1 named the task column `group`, and files with no version (before the kind columns)
get the kind from the method names those versions wrote, here and nowhere else.
"""

from __future__ import annotations

import re

import pandas as pd

from gpo.errors import GPOError

SCHEMA_KEY, RESULTS_SCHEMA = "gpo_results_schema", 2

LEGACY_NAME = re.compile(r"^(?:gpo\[(?P<variant>[^\]]*)\](?P<mlp>-mlp)?|gpo-(?P<paper>paper(?:-mlp)?)|llm-(?P<llm>.+?)"
                         r"|(?P<baseline>[^+]+?))(?:-ens(?P<ensemble>\d+))?(?P<shrunk>\+shrink)?$")


def with_schema(results: pd.DataFrame) -> pd.DataFrame:
    """Results as written: the schema version in the parquet metadata (pandas' attrs)."""
    results = results.copy()
    results.attrs[SCHEMA_KEY] = RESULTS_SCHEMA
    return results


def read_results(path) -> pd.DataFrame:
    """The results in file `path`, in today's columns."""
    return current(pd.read_parquet(path), path)


def current(table: pd.DataFrame, source) -> pd.DataFrame:
    """Results read from `source` (of any version) in today's columns; a newer version is
    refused in one line."""
    schema = table.attrs.get(SCHEMA_KEY)
    if schema is not None and schema > RESULTS_SCHEMA:
        raise GPOError(f"{source}: results of schema {schema}, newer than this gpo-study reads ({RESULTS_SCHEMA}): upgrade it")
    if schema is None and "method" in table and "family" not in table:
        table = table.assign(**legacy_kinds(table["method"]))
    if (schema or 1) < 2:
        table = table.rename(columns={"group": "task"})
    return with_schema(table)


def legacy_kinds(methods: pd.Series) -> dict:
    """The columns of a method's kind (family, variant, shrunk, ensemble) read from the names
    unversioned files wrote: gpo[VARIANT], gpo-paper, -mlp, -ensN, +shrink, llm-NAME, a
    baseline's own name."""
    kinds = {}
    for name in methods.dropna().unique():
        m = LEGACY_NAME.match(name).groupdict()
        family = "gpo" if m["variant"] is not None or m["paper"] else "llm" if m["llm"] else m["baseline"]
        variant = (m["variant"] + (m["mlp"] or "")) if m["variant"] is not None else m["paper"] or m["llm"] or ""
        kinds[name] = (family, variant, bool(m["shrunk"]), int(m["ensemble"] or 1))
    none = (None, None, None, None)  # rows that are no method's (a study's trials)
    columns = pd.DataFrame([kinds.get(m, none) for m in methods], index=methods.index,
                           columns=["family", "variant", "shrunk", "ensemble"])
    return {c: columns[c] for c in columns}
