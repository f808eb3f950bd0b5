"""Scaling fits of a score (alignment or accuracy) against a size (base-model parameters, GPO parameters, compute).

- log-linear: score = a + b * log10(size);
- saturating power law: error = 1 - score = c + A * size^(-alpha), with c >= 0 the
  error left at infinite size.
Both come with bootstrap intervals on their coefficients (resampling the observations) and
remember the size range they were fitted on: `predict` outside it raises unless asked to
extrapolate, and every report states the range.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize_scalar, nnls


def loglinear(size, a, b):
    return a + b * np.log10(size)


def power_law_error(size, c, A, alpha):
    return c + A * np.power(size, -alpha)


@dataclass
class Fit:
    kind: str  # "loglinear" or "power_law"
    coef: dict  # name -> value
    interval: dict  # name -> (low, high), 95% bootstrap
    size_range: tuple  # (min, max) of the sizes fitted
    n: int  # observations
    failed_boots: int = 0
    notes: list = field(default_factory=list)

    def predict(self, size, extrapolate: bool = False):
        size = np.asarray(size, dtype=float)
        lo, hi = self.size_range
        if not extrapolate and ((size < lo * (1 - 1e-9)).any() or (size > hi * (1 + 1e-9)).any()):
            raise ValueError(f"{self.kind} fit covers sizes {lo:.3g} to {hi:.3g}; "
                             f"pass extrapolate=True to predict at {size.min():.3g}..{size.max():.3g}")
        if self.kind == "loglinear":
            return loglinear(size, self.coef["a"], self.coef["b"])
        return 1 - power_law_error(size, self.coef["c"], self.coef["A"], self.coef["alpha"])

    @property
    def formula(self) -> str:
        return "score = a + b log10(N)" if self.kind == "loglinear" else "1 - score = c + A N^-alpha"

    def terms(self) -> str:
        return ", ".join(f"{k} = {v:.4g} [{self.interval[k][0]:.4g}, {self.interval[k][1]:.4g}]" for k, v in self.coef.items())

    def describe(self) -> str:
        notes = "".join(f"; {n}" for n in self.notes)
        return (f"{self.formula}: {self.terms()} (95% bootstrap, {self.n} observations, fitted on N = "
                f"{self.size_range[0]:.3g} to {self.size_range[1]:.3g}; not valid outside that range{notes})")


ALPHA_BOUNDS = (1e-3, 5.0)
MIN_SIZES = {"loglinear": 3, "power_law": 3}  # with two sizes every bootstrap interval is degenerate


def _fit_once(kind: str, size: np.ndarray, score: np.ndarray) -> dict:
    if kind == "loglinear":
        b, a = np.polyfit(np.log10(size), score, 1)
        return {"a": a, "b": b}
    # variable projection: for a fixed alpha the model is linear in (c, A) >= 0 (NNLS), so
    # only alpha needs a (bounded, one-dimensional) search
    error, scale = 1 - score, size.min()

    def basis(alpha):
        return np.stack([np.ones_like(size), (size / scale) ** -alpha], 1)

    alpha = minimize_scalar(lambda a: nnls(basis(a), error)[1], bounds=ALPHA_BOUNDS, method="bounded").x
    (c, A), _ = nnls(basis(alpha), error)
    return {"c": c, "A": A * scale**alpha, "alpha": alpha}


def fit(kind: str, size, score, boots: int = 500, seed: int = 0) -> Fit:
    """Fit `kind` to (size, score) observations; needs at least 3 distinct sizes."""
    size, score = np.asarray(size, dtype=float), np.asarray(score, dtype=float)
    distinct = len(np.unique(size))
    if distinct < MIN_SIZES[kind]:
        raise ValueError(f"a {kind} fit needs more distinct sizes than {distinct}")
    coef = _fit_once(kind, size, score)
    rng = np.random.default_rng(seed)
    samples, failed = [], 0
    for _ in range(boots):
        idx = rng.integers(0, len(size), len(size))
        if len(np.unique(size[idx])) < MIN_SIZES[kind]:
            failed += 1
            continue
        try:
            samples.append(_fit_once(kind, size[idx], score[idx]))
        except (RuntimeError, ValueError):  # a degenerate resample
            failed += 1
    interval = {k: tuple(np.quantile([s[k] for s in samples], [0.025, 0.975])) if samples else (np.nan, np.nan) for k in coef}
    notes = []
    if size.max() / size.min() < 10:
        notes.append(f"narrow: the sizes span a factor {size.max() / size.min():.2g}, under one decade")
    if kind == "power_law" and (coef["A"] <= 0 or not ALPHA_BOUNDS[0] * 1.01 < coef["alpha"] < ALPHA_BOUNDS[1] * 0.99):
        notes.append("degenerate: the error does not fall as a power of N over this range (A = 0 or alpha at a search bound)")
    return Fit(kind, coef, interval, (float(size.min()), float(size.max())), len(size), failed, notes)
