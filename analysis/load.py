"""Read study and run results (parquet) into one table, with base-model metadata joined in.

Accepted: study folders (study.parquet, from `gpo sweep`), run folders (results.parquet,
from `gpo run`), benchmark tables (all_results.parquet) or the parquet files themselves, on
any path pandas can read, of any version (gpo/results.py). A study's (or benchmark's) own runs
are not counted twice.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd

from gpo.errors import GPOError
from gpo.results import read_results

RESULT_FILES = ("study.parquet", "all_results.parquet", "results.parquet")


def find(paths) -> list[Path]:
    found = []
    for path in map(Path, paths):
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            # a study's or benchmark's own table covers the run folders beneath it
            tables = sorted(path.rglob("study.parquet")) + sorted(path.rglob("all_results.parquet"))
            covered = [t.parent for t in tables]
            found += tables + [f for f in sorted(path.rglob("results.parquet")) if not any(c in f.parents for c in covered)]
        else:
            raise GPOError(f"{path}: no such file or folder")
    if not found:
        raise GPOError(f"no results ({', '.join(RESULT_FILES)}) under {', '.join(map(str, paths))}")
    return found


@lru_cache(maxsize=None)
def model_metadata(model: str, layers: int) -> dict:
    """Parameters, depth, width and family of a base model (weights are not loaded)."""
    if model == "synthetic":
        return {"base_params": 0, "base_depth": 0, "base_width": 0, "base_family": "synthetic"}
    from gpo.embed.models import count_parameters, load_config

    config = load_config(model)
    depth = layers or getattr(config, "num_hidden_layers", 0)
    return {"base_params": count_parameters(model, layers), "base_depth": depth,
            "base_width": getattr(config, "hidden_size", 0), "base_family": config.model_type}


def load(paths) -> tuple[pd.DataFrame, pd.DataFrame, list[Path]]:
    """(test results, sweep trials, files read). Test results have one row per
    (source, base model, method, k, task, seed, split) with a `score` (its `metric`: alignment
    for groups, accuracy for respondents)."""
    files = find(paths)
    tests, trials = [], []
    for f in files:
        table = read_results(f).assign(source=str(f))
        if "kind" in table:
            trials.append(table[table.kind == "trial"])
            table = table[table.kind == "test"]
        tests.append(table)
    tests = pd.concat(tests, ignore_index=True)
    if "score" not in tests:  # results written before scores were named: alignment was the score
        tests = tests.assign(score=tests["alignment"], metric="alignment")
    tests["metric"] = tests["metric"].fillna("alignment") if "metric" in tests else "alignment"
    if "base_model" not in tests:
        tests["base_model"] = None
    tests["base_model"] = tests["base_model"].fillna(tests.get("embed_model"))
    tests["base_layers"] = tests.get("base_layers", pd.Series(index=tests.index, dtype=float)).fillna(
        tests.get("embed_layers", 0)).fillna(0).astype(int)
    tests["study"] = tests.get("study", pd.Series(index=tests.index, dtype=object)).fillna(tests.get("run"))
    meta = pd.DataFrame([{"base_model": m, "base_layers": n, **model_metadata(m, n)}
                         for m, n in tests[["base_model", "base_layers"]].drop_duplicates().itertuples(index=False)])
    tests = tests.drop(columns=[c for c in meta.columns if c in tests and c not in ("base_model", "base_layers")])
    tests = tests.merge(meta, on=["base_model", "base_layers"], how="left")
    tests["base"] = tests["base_model"] + tests["base_layers"].map(lambda n: f" (first {n} layer{'s' if n > 1 else ''})" if n else "")
    trials = pd.concat(trials, ignore_index=True) if trials else pd.DataFrame()
    return tests, trials, files
