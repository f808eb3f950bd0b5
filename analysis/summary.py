"""The report's first screen, generated from the numbers: which method wins at each k and
base model and by how much, how GPO stands against the reference baseline (paired
intervals), and whether the scaling fit says anything (range, degeneracy, seeds)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gpo.analysis.aggregate import UNIT, metric_of
from gpo.analysis.paired import is_gpo, paired

CELL = ["dataset", "base", "k"]


def verdict(lo: float, hi: float) -> str:
    return "above" if lo > 0 else "below" if hi < 0 else "indistinguishable from"


def interval(d: dict | pd.Series) -> str:
    return f"{d['mean']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}]"


def winners(tests: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, base, k): the method with the highest mean test score (mean over units
    of the mean over groups), the runner-up, and the paired difference between them."""
    out = []
    for key, cell in tests.groupby(CELL):
        means = cell.groupby(["method", *(c for c in UNIT if c in cell)])["score"].mean().groupby("method").mean()
        ranked = means.sort_values(ascending=False).index
        family = dict(zip(cell.method, cell.family))
        row = {**dict(zip(CELL, key)), "winner": ranked[0], "winner_family": family[ranked[0]],
               "runner_up": ranked[1] if len(ranked) > 1 else None}
        if row["runner_up"] is not None:
            row.update(paired(cell, ranked[0], ranked[1]))
        out.append(row)
    return pd.DataFrame(out)


def _settings(cells: pd.DataFrame) -> str:
    """'minilm at k = 5, 10; mpnet at k = 20' (or 'every setting')."""
    return "; ".join(f"{base} at k = {', '.join(map(str, sorted(g['k'])))}" for base, g in cells.groupby("base", sort=False))


def _counts(names: pd.Series) -> str:
    """'kernel in 8, logit in 4'"""
    return ", ".join(f"{m} in {c}" for m, c in names.value_counts().items())


def _winner_text(wins: pd.DataFrame, metric: str) -> str:
    n = len(wins)
    counts = wins["winner"].value_counts()
    text = f"**Which method wins:** the highest mean test {metric} "
    if n == 1:
        text += f"is {counts.index[0]}'s"
    elif len(counts) == 1:
        text += f"is {counts.index[0]}'s in all {n} settings (base model x k)"
    else:
        text += f"goes to {_counts(wins['winner'])} of {n} settings (base model x k)"
        gpo_wins = wins[wins.winner_family == "gpo"]
        text += "".join(f"; {m} wins at {_settings(g)}" for m, g in gpo_wins.groupby("winner"))
    paired_rows = wins.dropna(subset=["mean"])
    if len(paired_rows) == 1:
        r = paired_rows.iloc[0]
        text += f", ahead of {r['runner_up']} by {interval(r)} (paired 95% interval)"
    elif len(paired_rows):
        clear = int((paired_rows["lo"] > 0).sum())
        text += (f"; the winner's margin over the runner-up runs from {paired_rows['mean'].min():+.4f} to "
                 f"{paired_rows['mean'].max():+.4f}, its paired 95% interval excluding zero in {clear} of the {len(paired_rows)}")
    return text + "."


def _gpo_text(comparisons: pd.DataFrame) -> list[str]:
    lines = []
    cells = comparisons.drop_duplicates(CELL)
    how = "; ".join(dict.fromkeys(cells["chosen_on"]))
    ref_text = (f"{cells['reference'].iloc[0]}, {how}" if cells["reference"].nunique() == 1 else
                f"{how}, chosen per setting: {_counts(cells['reference'])} settings")
    for method, rows in comparisons[is_gpo(comparisons)].groupby("method"):
        n = len(rows)
        if n == 1:
            r = rows.iloc[0]
            lines.append(f"**{method} against the reference** ({ref_text}): {method} - {r['reference']} = {interval(r)} "
                         f"(paired 95% interval): {verdict(r['lo'], r['hi'])} the reference.")
            continue
        counts = {v: int(sum(verdict(lo, hi) == v for lo, hi in zip(rows["lo"], rows["hi"])))
                  for v in ("above", "below", "indistinguishable from")}
        parts = [f"{v} it in {c}" for v, c in counts.items() if c]
        best, worst = rows.loc[rows["mean"].idxmax()], rows.loc[rows["mean"].idxmin()]
        lines.append(f"**{method} against the reference** ({ref_text}): of {n} settings (base model x k) it is "
                     f"{', '.join(parts)} (paired 95% intervals); the difference runs from {worst['mean']:+.4f} "
                     f"({worst['base']}, k = {worst['k']}: {interval(worst)}) to {best['mean']:+.4f} "
                     f"({best['base']}, k = {best['k']}: {interval(best)}).")
    return lines


def _scaling_text(dataset: str, tests: pd.DataFrame, fits: dict, metric: str) -> str:
    sizes = np.sort(tests["base_params"].dropna().unique())
    sizes = sizes[sizes > 0]
    if len(sizes) < 3:
        return (f"**Scaling:** {len(sizes)} base-model size{'s' if len(sizes) != 1 else ''}: no scaling fit "
                "(a fit needs at least three).")
    span = sizes[-1] / sizes[0]
    text = (f"**Scaling:** {len(sizes)} base-model sizes, {sizes[0] / 1e6:.0f}M to {sizes[-1] / 1e6:.0f}M parameters "
            f"(a factor {span:.1f}{', under one decade' if span < 10 else ''}); the fits say nothing outside that range.")
    for method in sorted(tests.method[is_gpo(tests)].unique()):
        slopes = {k: f for (d, m, k, axis, kind), f in fits.items()
                  if (d, m, axis, kind) == (dataset, method, "base_params", "loglinear")}
        if not slopes:
            continue
        described = ", ".join(f"k = {k}: {f.coef['b']:+.4f} [{f.interval['b'][0]:+.4f}, {f.interval['b'][1]:+.4f}]"
                              for k, f in sorted(slopes.items()))
        signs = {verdict(*f.interval["b"]) for f in slopes.values()}
        trend = ("no trend: every interval contains zero" if signs == {"indistinguishable from"} else
                 f"{metric} falls with size" if signs == {"below"} else
                 f"{metric} rises with size" if signs == {"above"} else "no consistent trend across k")
        text += f" {method}'s log-linear slope per decade of parameters: {described}; {trend}."
        power = {k: f for (d, m, k, axis, kind), f in fits.items()
                 if (d, m, axis, kind) == (dataset, method, "base_params", "power_law")}
        degenerate = sorted(k for k, f in power.items() if any("degenerate" in n for n in f.notes))
        if degenerate:
            text += (f" The saturating power law is degenerate at k = {', '.join(map(str, degenerate))} "
                     "(the error does not fall as a power of size): there is no power law to report there.")
    return text


def _caveat(tests: pd.DataFrame) -> str | None:
    units = tests.groupby(CELL)[[c for c in UNIT if c in tests]].apply(lambda g: len(g.drop_duplicates())).max()
    if units > 1:
        return None
    return ("**One seed x group split per setting:** the intervals resample test groups only; they leave out how much "
            "GPO moves when retrained from another seed or on another split of the groups.")


def summarise_study(tests: pd.DataFrame, comparisons: pd.DataFrame, wins: pd.DataFrame, fits: dict) -> tuple[str, pd.DataFrame]:
    """(plain-words summary, per-setting table) from the test rows, the paired comparisons with
    the reference, the winners and the scaling fits."""
    paragraphs = []
    for dataset, part in tests.groupby("dataset"):
        sizes = part.drop_duplicates("base").sort_values("base_params")
        groups = part.groupby([*CELL, *(c for c in UNIT if c in part)])["task"].nunique()
        n_groups = str(groups.min()) if groups.min() == groups.max() else f"{groups.min()} to {groups.max()}"
        metric = metric_of(part)
        tasks = "respondents" if "unit" in part and (part["unit"] == "respondent").any() else "groups"
        units = groups.groupby(CELL).size()
        n_units = str(units.min()) if units.min() == units.max() else f"{units.min()} to {units.max()}"
        runs = f"{n_units} (seed, group split) run{'s' if n_units != '1' else ''}"
        lines = [f"{dataset}: {len(sizes)} base model{'s' if len(sizes) > 1 else ''} "
                 f"({', '.join(f'{b} {n / 1e6:.0f}M' for b, n in zip(sizes['base'], sizes['base_params']))}); "
                 f"k = {', '.join(map(str, sorted(part['k'].unique())))}; {n_groups} test {tasks} in each of {runs}; "
                 f"scores are {metric}",
                 _winner_text(wins[wins.dataset == dataset], metric),
                 *(_gpo_text(comparisons[comparisons.dataset == dataset]) if (comparisons.dataset == dataset).any() else
                   ["**No reference baseline:** these results have neither validation rows nor the mean prior: "
                    "no paired comparison."]),
                 _scaling_text(dataset, part, fits, metric)]
        caveat = _caveat(part)
        lines += [caveat] if caveat else []
        paragraphs.append(f"### {lines[0]}\n\n" + "\n".join(f"- {line}" for line in lines[1:]))
    table = wins[CELL].copy()
    table["best on test"] = wins["winner"]
    table["margin over runner-up [95%]"] = [f"{interval(r)} vs {r['runner_up']}" if pd.notna(r.get("mean")) else ""
                                            for _, r in wins.iterrows()]
    gpo = comparisons[is_gpo(comparisons)]
    for method, rows in gpo.groupby("method"):
        cells = rows.set_index(CELL)
        table[f"{method} - reference [95%]"] = [
            f"{interval(cells.loc[key])} vs {cells.loc[key, 'reference']}" if key in cells.index else ""
            for key in map(tuple, wins[CELL].to_numpy())]
    return "\n\n".join(paragraphs), table
