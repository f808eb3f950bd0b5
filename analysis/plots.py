"""Figures (matplotlib, written as PNG and SVG), each readable without the code: titled,
axes labelled with units, intervals drawn, points labelled with their base model.

Methods are plotted as their paired difference to a named reference baseline (zero line),
not as raw scores: methods that differ by 0.002 sit within 0.02-wide group-to-group
intervals of raw scores, but their paired difference is resolved. A score is the test metric
(alignment for groups, accuracy for respondents; the report says which). `uniform` ignores the
data and would stretch the axis tenfold, so it is left out with a note. Callers draw a figure
only when it has something to show; these functions assume there is.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

LEFT_OUT = ("uniform",)  # never a contender; its difference would flatten the others'
BASELINE_COLOURS = {"logit": "tab:orange", "mixture": "tab:green", "mean": "tab:gray", "ridge": "tab:brown",
                    "kernel": "tab:olive", "uniform": "black"}
GPO_COLOURS = ["tab:blue", "tab:red", "tab:purple", "tab:cyan", "tab:pink"]
MIN_WIDTH = 7.5  # inches: room for the title and the legend beside a single panel
DIFF_LABEL = "score − reference\n(paired mean, 95% CI)"


def save(fig, out: Path, name: str) -> str:
    out.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "svg"):
        fig.savefig(out / f"{name}.{ext}", dpi=130, bbox_inches="tight")
    plt.close(fig)
    return f"{name}.png"


def gpo_methods(rows: pd.DataFrame) -> set:
    return set(rows.loc[rows["family"] == "gpo", "method"])


def styles(rows: pd.DataFrame) -> dict:
    """GPO variants bold and filled, baselines thin and hollow; one colour per method in every figure."""
    gpo = sorted(gpo_methods(rows))
    out = {m: {"color": GPO_COLOURS[i % len(GPO_COLOURS)], "lw": 2.2, "ms": 7, "zorder": 4} for i, m in enumerate(gpo)}
    spare = iter(["tab:cyan", "tab:pink", "gold", "navy"])
    for m in sorted(set(rows["method"]) - set(gpo)):
        out[m] = {"color": BASELINE_COLOURS.get(m) or next(spare, "gray"), "lw": 1.1, "ms": 5, "mfc": "white", "zorder": 3}
    return out


def order(methods, gpo: set) -> list:
    """GPO variants first, then the baselines, each by name."""
    return sorted(methods, key=lambda m: (m not in gpo, m))


def short(base: str) -> str:
    """'minilm (first 3 layers)' -> 'minilm 3 layers' (tick labels must be short to not collide)."""
    return re.sub(r" \(first (\d+) layers?\)", lambda m: f" {m[1]} layer{'s' if m[1] != '1' else ''}", base)


def with_references(diffs: pd.DataFrame) -> pd.DataFrame:
    """The differences plus each setting's reference at exactly zero, so that a baseline that is
    the reference at some settings keeps one continuous line."""
    cells = [c for c in ("dataset", "base", "base_params", "k") if c in diffs]
    refs = diffs.drop_duplicates(cells)[[*cells, "reference", "chosen_on"]].assign(
        method=lambda d: d["reference"], mean=0.0, lo=0.0, hi=0.0, is_reference=True)
    return pd.concat([diffs.assign(is_reference=False), refs], ignore_index=True)


def _reference_note(diffs: pd.DataFrame) -> str:
    refs = diffs.drop_duplicates("reference")
    chosen = "; ".join(dict.fromkeys(diffs["chosen_on"]))
    names = ", ".join(refs["reference"])
    note = f"zero = the reference: {names} ({chosen})"
    left = diffs[diffs.method.isin(LEFT_OUT)]
    if len(left):
        note += "; left out: " + ", ".join(f"{m} ({g['mean'].max():+.3f} or lower)" for m, g in left.groupby("method"))
    return note


def _errorbars(ax, x, rows, style, label):
    ax.errorbar(x, rows["mean"], yerr=[rows["mean"] - rows["lo"], rows["hi"] - rows["mean"]], marker="o", capsize=2.5,
                label=label, **style)
    if "is_reference" in rows:  # where this method is the reference: a star on the zero line
        ref = rows["is_reference"].to_numpy(bool)
        ax.scatter(np.asarray(x)[ref], rows["mean"][ref], marker="*", s=90, color=style["color"], edgecolor="black",
                   linewidth=0.6, zorder=5)


def _zero(ax):
    ax.axhline(0, color="black", lw=1, zorder=2)
    ax.grid(axis="y", lw=0.4, alpha=0.5)


def _legend_and_note(fig, axes, diffs, stars: bool = True):
    handles, labels = axes[-1].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="outside right upper", title="method", title_fontsize=8)
    note = _reference_note(diffs) + ("; a star marks the reference itself" if stars else "")
    fig.supxlabel(textwrap.fill(note, int(fig.get_figwidth() * 15)), fontsize=8, x=0.01, ha="left")


def _line_panels(diffs: pd.DataFrame, n_panels: int, width: float, height: float):
    """(figure, axes, styles, methods): panels side by side, shared y."""
    fig, axes = plt.subplots(1, n_panels, figsize=(max(width * n_panels + 1.8, MIN_WIDTH), height), sharey=True, squeeze=False,
                             layout="constrained")
    shown = diffs[~diffs.method.isin(LEFT_OUT)]
    return fig, axes[0], styles(shown), order(shown.method.unique(), gpo_methods(shown))


def scaling(diffs: pd.DataFrame, dataset: str, out: Path) -> str:
    """Each method minus the reference against base-model parameters, one panel per k;
    ticks name the base models."""
    part = with_references(diffs[diffs.dataset == dataset])
    ks = sorted(part["k"].unique())
    fig, axes, style, methods = _line_panels(part, len(ks), 3.6, 4.6)
    sizes = part.drop_duplicates("base_params").sort_values("base_params")
    for ax, k in zip(axes, ks):
        for i, method in enumerate(methods):
            rows = part[(part.k == k) & (part.method == method)].sort_values("base_params")
            dodge = 10 ** (0.012 * (i - (len(methods) - 1) / 2))  # side by side on the log axis
            _errorbars(ax, rows["base_params"] * dodge, rows, style[method], method)
        _zero(ax)
        ax.set_xscale("log")
        ax.set_xticks(sizes["base_params"], [f"{short(b)} · {n / 1e6:.0f}M" for b, n in zip(sizes["base"], sizes["base_params"])],
                      rotation=90, fontsize=7.5)
        ax.minorticks_off()
        refs = part[(part.k == k) & part.is_reference]["reference"].unique()
        ax.set_title(f"k = {k}: vs {' or '.join(refs)}", fontsize=10)
        ax.set_xlabel("base model · parameters (log scale)", fontsize=9)
    axes[0].set_ylabel(DIFF_LABEL)
    fig.suptitle(f"{dataset}: each method minus the reference baseline, against base-model size")
    _legend_and_note(fig, axes, part[~part.is_reference])
    return save(fig, out, f"scaling-{dataset}")


def fewshot(diffs: pd.DataFrame, dataset: str, out: Path) -> str:
    """Each method minus the reference against the number of context questions k, one panel per base model."""
    part = with_references(diffs[diffs.dataset == dataset])
    bases = list(dict.fromkeys(part.sort_values("base_params")["base"]))
    ks = sorted(part["k"].unique())
    fig, axes, style, methods = _line_panels(part, len(bases), 2.9, 4.0)
    for ax, base in zip(axes, bases):
        for i, method in enumerate(methods):
            rows = part[(part.base == base) & (part.method == method)].sort_values("k")
            _errorbars(ax, rows["k"].map(ks.index) + 0.07 * (i - (len(methods) - 1) / 2), rows, style[method], method)
        _zero(ax)
        refs = part[(part.base == base) & part.is_reference].set_index("k")["reference"]
        varies = refs.nunique() > 1
        ax.set_xticks(range(len(ks)), [f"{k}\nvs {refs.get(k, '-')}" if varies else str(k) for k in ks], fontsize=8)
        ax.set_title(short(base) if varies else f"{short(base)}: vs {refs.iloc[0]}", fontsize=9)
        ax.set_xlabel("context questions k", fontsize=9)
    axes[0].set_ylabel(DIFF_LABEL)
    fig.suptitle(f"{dataset}: each method minus the reference baseline, against context size")
    _legend_and_note(fig, axes, part[~part.is_reference])
    return save(fig, out, f"fewshot-{dataset}")


def groups(group_diffs: pd.DataFrame, dataset: str, base: str, out: Path) -> str:
    """Test groups x methods: each method minus the reference on that group (mean over units),
    one panel per k; blue above the reference, red below."""
    part = group_diffs[(group_diffs.dataset == dataset) & (group_diffs.base == base)]
    shown = part[~part.method.isin(LEFT_OUT)]
    ks = sorted(part["k"].unique())
    tables = {k: shown[shown.k == k].pivot_table(index="task", columns="method", values="mean") for k in ks}
    gpo = gpo_methods(shown)
    tables = {k: t[order(t.columns, gpo)] for k, t in tables.items()}
    first = tables[ks[-1]]
    gpo = [m for m in first.columns if m in gpo]
    rows = first.sort_values(gpo[0] if gpo else first.columns[0]).index  # groups ordered by GPO's difference at the largest k
    rows = rows.append(pd.concat(tables.values()).index.unique().difference(rows))
    scale = max(float(np.nanmax(np.abs(t.to_numpy()))) for t in tables.values()) or 1.0
    widths = [t.shape[1] for t in tables.values()]
    fig, axes = plt.subplots(1, len(ks), figsize=(max(0.62 * sum(widths) + 3.5, MIN_WIDTH), 0.28 * len(rows) + 2.4), sharey=True,
                             squeeze=False, layout="constrained", gridspec_kw={"width_ratios": widths})
    axes = axes[0]
    for ax, k in zip(axes, ks):
        table = tables[k].reindex(index=rows)
        im = ax.imshow(table.to_numpy(), aspect="auto", cmap="RdBu", vmin=-scale, vmax=scale)
        ax.set_xticks(range(table.shape[1]), table.columns, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(rows)), rows, fontsize=7)
        for (i, j), v in np.ndenumerate(table.to_numpy()):
            if np.isfinite(v):
                ax.text(j, i, f"{v:+.3f}", ha="center", va="center", fontsize=5.5, color="white" if abs(v) > 0.6 * scale else "black")
        ax.set_title(f"k = {k}: vs {' or '.join(part[part.k == k]['reference'].unique())}", fontsize=9)
    fig.colorbar(im, ax=list(axes), label="score − reference (blue: above it)", shrink=0.8)
    fig.suptitle(f"{dataset}, {base}: each test group, each method minus the reference")
    fig.supxlabel(textwrap.fill(_reference_note(part), int(fig.get_figwidth() * 15)), fontsize=8, x=0.01, ha="left")
    return save(fig, out, f"groups-{dataset}")


def compute(runs: pd.DataFrame, dataset: str, out: Path) -> str:
    """Each GPO run minus the reference against its training compute, one panel per k, points
    labelled with their base model; the front of runs that no cheaper run beats."""
    part = runs[runs.dataset == dataset]
    ks = sorted(part["k"].unique())
    fig, axes = plt.subplots(1, len(ks), figsize=(max(4.0 * len(ks) + 1.8, MIN_WIDTH), 4.4), sharey=True, squeeze=False,
                             layout="constrained")
    axes = axes[0]
    style = styles(part)
    for ax, k in zip(axes, ks):
        cell = part[part.k == k].sort_values("train_flops")
        for method, rows in cell.groupby("method"):
            _errorbars(ax, rows["train_flops"], rows, {**style[method], "ls": "none"}, method)
            for x, y, label in zip(rows["train_flops"], rows["mean"], rows["label"]):
                ax.annotate(short(label), (x, y), xytext=(5, 0), textcoords="offset points", fontsize=7, va="center",
                            bbox={"fc": "white", "ec": "none", "alpha": 0.8, "pad": 0.5})
        front = cell[cell["mean"] >= cell["mean"].cummax()]
        ax.step(front["train_flops"], front["mean"], where="post", color="gray", lw=1, ls=":", label="front: no cheaper run beats it")
        _zero(ax)
        ax.set_xscale("log")
        ax.margins(x=0.25)  # room for the labels
        ax.set_xlabel("GPO training compute\n(FLOPs, 6 x params x points)", fontsize=9)
        ax.set_title(f"k = {k}: vs {' or '.join(cell['reference'].unique())}", fontsize=10)
    axes[0].set_ylabel(DIFF_LABEL.replace("paired mean", "paired mean over the run's test groups"))
    fig.suptitle(f"{dataset}: each GPO run minus the reference baseline, against training compute")
    _legend_and_note(fig, axes, part, stars=False)
    return save(fig, out, f"compute-{dataset}")


def sweep_diagnostics(trials: pd.DataFrame, importances: dict, name: str, out: Path, reference: tuple | None = None) -> str:
    """Validation score per trial in launch order (with the reference baseline's validation
    score when known), and parameter importances when there are enough finished trials."""
    fig, axes = plt.subplots(1, 2 if importances else 1, figsize=(11 if importances else 6.5, 3.8), squeeze=False,
                             layout="constrained")
    a = axes[0, 0]
    scores = trials["val_score"].to_numpy()
    colors = ["C0" if s == "completed" else "C7" for s in trials["status"]]
    a.scatter(range(len(scores)), scores, c=colors, s=20)
    a.step(range(len(scores)), np.fmax.accumulate(np.nan_to_num(scores, nan=-np.inf)), where="post", color="C3", label="best so far")
    if reference is not None:
        a.axhline(reference[1], color="black", lw=1, ls="--", label=f"{reference[0]} (best baseline on validation)")
    a.set_xlabel("trial (launch order; grey = stopped early by ASHA)")
    a.set_ylabel("validation score")
    a.legend(fontsize=8)
    if importances:
        b = axes[0, 1]
        keys = sorted(importances, key=importances.get)
        b.barh(keys, [importances[k] for k in keys])
        b.set_xlabel("importance (Optuna fANOVA)")
    fig.suptitle(f"sweep {name}")
    return save(fig, out, f"sweep-{name}")
