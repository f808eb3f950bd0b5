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


REFERENCE_VALIDATION = "test-groups (reference bug)"  # data.validation: the reference code selects on its test groups


def split_groups(groups: list[str], train_fraction: float, val_fraction: float, seed: int,
                 extra_train: list[str] = (), test: list[str] = (), val: list[str] = (), train: list[str] = (),
                 rounding: str = "round", validation: str = "carved") -> GroupSplit:
    """Roles for the groups: named ones (`test`, `val`, `train`) take exactly the groups named;
    the others are drawn from `groups` (less the named groups) by a seeded shuffle.

    Unnamed test groups: the last (1 - train_fraction) of the shuffled groups; the first
    round(train_fraction x n) ones (`rounding` "floor": int(), as the reference code) are seen
    in training. Unnamed validation groups: `val_fraction` of the training candidates (at least
    one), which are the named training groups or else the seen groups; with `validation`
    REFERENCE_VALIDATION none is carved out and the test groups validate (every choice then
    reads them: the reference code's bug, offered to measure its optimism). Groups in
    `extra_train` are training tasks only: never validation or test groups.
    """
    named = {"test": list(test), "val": list(val), "train": list(train)}
    for a, b in (("test", "val"), ("test", "train"), ("val", "train")):
        both = sorted(set(named[a]) & set(named[b]))
        if both:
            raise ConfigError(f"data.{a}_groups and data.{b}_groups share {both}; a group has one role")
    taken = set(test) | set(val) | set(train)
    order = [groups[i] for i in np.random.default_rng(seed).permutation(len(groups)) if groups[i] not in taken]
    if test:
        seen = order
    else:
        if not 0 < train_fraction < 1:
            raise ConfigError(f"data.train_fraction must be in (0, 1), got {train_fraction}")
        n_seen = int(train_fraction * len(order)) if rounding == "floor" else int(round(train_fraction * len(order)))
        seen, test = order[:n_seen], order[n_seen:]
    candidates = list(train) or seen
    if validation == REFERENCE_VALIDATION:
        val = list(test)
    elif not val:
        if train:  # draw from the named training groups, in a seeded order of their own
            candidates = [candidates[i] for i in np.random.default_rng(seed).permutation(len(candidates))]
        val = candidates[: max(1, int(round(val_fraction * len(candidates))))]
    not_train = {*val}
    train = [g for g in candidates if g not in not_train]
    not_extra = {*groups, *test, *val}
    train += [g for g in extra_train if g not in not_extra]
    for role, members, key in (("test", test, "test_groups"), ("validation", val, "val_groups"), ("training", train, "train_groups")):
        if not members:
            raise ConfigError(
                f"data: no {role} group ({len(groups)} groups in data.groups at train_fraction {train_fraction}, "
                f"named: test {len(named['test'])}, val {len(named['val'])}, train {len(named['train'])}); "
                f"name them with data.{key} or add groups")
    return GroupSplit(train=list(train), val=list(val), test=list(test))


def split_respondents(ids: list[str], strata: np.ndarray, train_fraction: float, val_fraction: float, seed: int,
                      test: list[str] = (), val: list[str] = (), train: list[str] = ()) -> GroupSplit:
    """Roles for respondents: drawn within each stratum (e.g. a survey form, so every role holds
    each form in its share), or, where any role is named, as `split_groups` draws them."""
    if test or val or train:
        return split_groups(ids, train_fraction, val_fraction, seed, test=test, val=val, train=train)
    parts = [split_groups([ids[i] for i in np.flatnonzero(strata == s)], train_fraction, val_fraction, seed)
             for s in np.unique(strata)]
    return GroupSplit(*([g for part in parts for g in getattr(part, role)] for role in ("train", "val", "test")))
