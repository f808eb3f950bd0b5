"""The registry of baselines: a baseline is its function and one `register` call, which declares
the tasks it predicts (`units`: groups, respondents), whether it reads the context, whether a
residual GPO may correct it (`prior`), and the settings grid chosen on validation tasks. The
config's checks, selection and GPO's priors read it; nothing else lists baselines.

    @register(units=("group",), grid={"alpha": [0.1, 1.0]})
    def shrunk_mean(points, basis, episode, alpha=1.0): ...

The built-in baselines register when gpo.baselines is imported (gpo/baselines.py,
gpo/recommenders.py); read the registry through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

UNITS = ("group", "respondent")


@dataclass(frozen=True)
class Baseline:
    name: str
    fn: Callable  # (points, basis or panel, episode, **settings) -> (B, P) probabilities
    units: tuple[str, ...]
    reads_context: bool = True  # False: one setting for every k, and nothing to shrink
    prior: bool = False  # a residual GPO may correct it (model.prior)
    grid: dict | Callable = field(default_factory=dict)  # {setting: values}, or a function of the basis giving one


REGISTRY: dict[str, Baseline] = {}


def register(name: str | None = None, *, units, reads_context: bool = True, prior: bool = False, grid=None):
    """Add the decorated function to the registry, under `name` (default: its own)."""
    def add(fn: Callable) -> Callable:
        key = name or fn.__name__
        assert set(units) <= set(UNITS), f"{key}: units from {UNITS}"
        REGISTRY[key] = Baseline(key, fn, tuple(units), reads_context, prior, grid or {})
        return fn
    return add


def names(unit: str | None = None) -> tuple[str, ...]:
    """The baselines of a unit's tasks (every one when None), in registration order."""
    return tuple(n for n, b in REGISTRY.items() if unit is None or unit in b.units)


def priors(unit: str) -> tuple[str, ...]:
    """What a residual GPO of a unit's tasks may correct: "none" (the paper's GPO) or a baseline."""
    return ("none", *(n for n, b in REGISTRY.items() if b.prior and unit in b.units))
