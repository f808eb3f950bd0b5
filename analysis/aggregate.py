"""Means and bootstrap intervals over seeds, group splits and groups.

A *unit* is one (seed, split seed, train fraction): one trained model scored on its test
groups. Per unit: the mean over groups and the worst group. Across units: their mean, with a
95% interval from a two-level bootstrap (resample units, then groups within each unit).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

UNIT = ["seed", "split_seed", "train_fraction"]


def bootstrap(cell: pd.DataFrame, boots: int = 1000, seed: int = 0) -> dict:
    units = [g["alignment"].to_numpy() for _, g in cell.groupby([c for c in UNIT if c in cell], dropna=False)]
    mean = float(np.mean([u.mean() for u in units]))
    worst = float(np.mean([u.min() for u in units]))
    rng = np.random.default_rng(seed)
    means, worsts = np.empty(boots), np.empty(boots)
    for b in range(boots):
        picked = [units[i] for i in rng.integers(0, len(units), len(units))]
        resampled = [u[rng.integers(0, len(u), len(u))] for u in picked]
        means[b] = np.mean([u.mean() for u in resampled])
        worsts[b] = np.mean([u.min() for u in resampled])
    lo, hi = np.quantile(means, [0.025, 0.975])
    wlo, whi = np.quantile(worsts, [0.025, 0.975])
    return {"mean": mean, "lo": lo, "hi": hi, "worst": worst, "worst_lo": wlo, "worst_hi": whi,
            "units": len(units), "groups": int(np.mean([len(u) for u in units]))}


def summarise(tests: pd.DataFrame, by=("dataset", "base", "base_params", "method", "k"), boots: int = 1000) -> pd.DataFrame:
    by = [c for c in by if c in tests]
    rows = [{**dict(zip(by, key if isinstance(key, tuple) else (key,))), **bootstrap(cell, boots)}
            for key, cell in tests.groupby(by, dropna=False)]
    return pd.DataFrame(rows)


def per_group(tests: pd.DataFrame, by=("dataset", "base", "method", "k", "group")) -> pd.DataFrame:
    by = [c for c in by if c in tests]
    return tests.groupby(by, dropna=False)["alignment"].agg(["mean", "std", "count"]).reset_index()
