"""Group splits: meta-training groups, a validation subset of them, and held-out test groups."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gpo.errors import ConfigError


@dataclass(frozen=True)
class GroupSplit:
    train: list[str]  # meta-training tasks
    val: list[str]  # model selection only (never the test groups)
    test: list[str]  # touched once per reported number

    def as_dict(self) -> dict:
        return {"train": self.train, "val": self.val, "test": self.test}


def split_groups(groups: list[str], train_fraction: float, val_fraction: float, seed: int,
                 extra_train: list[str] = ()) -> GroupSplit:
    """Shuffle `groups` with `seed`; the first `train_fraction` of them are seen in training.

    `val_fraction` of those seen groups become validation groups (at least one). Groups in
    `extra_train` are training tasks only: they are never validation or test groups.
    """
    if not 0 < train_fraction < 1:
        raise ConfigError(f"data.split: train fraction must be in (0, 1), got {train_fraction}")
    order = [groups[i] for i in np.random.default_rng(seed).permutation(len(groups))]
    n_seen = int(round(train_fraction * len(groups)))
    n_val = max(1, int(round(val_fraction * n_seen)))
    if n_seen - n_val < 1 and not extra_train or n_seen >= len(groups):
        raise ConfigError(
            f"data.split: {len(groups)} groups at fraction {train_fraction} leave "
            f"{n_seen - n_val} training and {len(groups) - n_seen} test groups; need at least one of each"
        )
    seen = order[:n_seen]
    return GroupSplit(train=seen[n_val:] + [g for g in extra_train if g not in groups],
                      val=seen[:n_val], test=order[n_seen:])
