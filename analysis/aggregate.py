"""Means and bootstrap intervals over seeds, group splits and groups.

A *unit* is one (seed, split seed, train fraction): one trained model scored on its test
groups. Per unit: the mean over groups and the worst group. Across units: their mean, with a
95% interval from a two-level bootstrap (resample units, then groups within each unit).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

UNIT = ["seed", "split_seed", "train_fraction"]


def metric_of(rows: pd.DataFrame) -> str:
    """The name of the score the rows hold: alignment (groups), accuracy (respondents), or both."""
    names = sorted(set(rows["metric"].dropna())) if "metric" in rows else []
    return " / ".join(names) or "alignment"


def bootstrap(cell: pd.DataFrame, boots: int = 1000, seed: int = 0, value: str = "score") -> dict:
    """Mean and worst group of `value` (the mean over units of each unit's mean and minimum),
    with two-level bootstrap intervals.

    Units are resampled, then groups within each unit: a trained model's luck is shared by all
    groups of its unit, so resampling (unit, group) pairs alone would count one lucky model as
    many independent results. Units may hold different numbers of groups."""
    units = [g[value].to_numpy(float) for _, g in cell.groupby([c for c in UNIT if c in cell], dropna=False)]
    n = np.array([len(u) for u in units])
    values = np.full((len(units), n.max()), np.nan)  # (units, groups), padded
    for i, u in enumerate(units):
        values[i, : len(u)] = u
    rng = np.random.default_rng(seed)
    picked = rng.integers(len(units), size=(boots, len(units)))  # (boots, units)
    size = n[picked][..., None]
    drawn = values[picked[..., None], rng.integers(0, size, size=(*picked.shape, n.max()))]  # (boots, units, groups)
    within = np.arange(n.max()) < size  # a resampled unit keeps its own number of groups
    means = (np.where(within, drawn, 0).sum(2) / size[..., 0]).mean(1)
    worsts = np.where(within, drawn, np.inf).min(2).mean(1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    wlo, whi = np.quantile(worsts, [0.025, 0.975])
    return {"mean": float(np.mean([u.mean() for u in units])), "lo": lo, "hi": hi,
            "worst": float(np.mean([u.min() for u in units])), "worst_lo": wlo, "worst_hi": whi,
            "units": len(units), "groups": int(np.mean(n))}


def summarise(tests: pd.DataFrame, by=("dataset", "base", "base_params", "method", "k"), boots: int = 1000) -> pd.DataFrame:
    by = [c for c in by if c in tests]
    rows = [{**dict(zip(by, key if isinstance(key, tuple) else (key,))), **bootstrap(cell, boots)}
            for key, cell in tests.groupby(by, dropna=False)]
    return pd.DataFrame(rows)

