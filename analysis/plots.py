"""Figures (matplotlib, written as PNG and SVG), each readable without the code: titled,
axes labelled with units, intervals drawn, fitted curves only over their fitted range."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def save(fig, out: Path, name: str) -> str:
    out.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "svg"):
        fig.savefig(out / f"{name}.{ext}", dpi=130, bbox_inches="tight")
    plt.close(fig)
    return f"{name}.png"


def _finish(ax, xlabel: str, ylabel: str, title: str, log_x: bool = True) -> None:
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))


def _errorbars(ax, x, part, label):
    ax.errorbar(x, part["mean"], yerr=[part["mean"] - part["lo"], part["hi"] - part["mean"]],
                marker="o", capsize=3, label=label)


def scaling(summary: pd.DataFrame, fits: dict, dataset: str, k: int, out: Path) -> str:
    """Alignment vs base-model parameters, one line per method, with each method's log-linear fit."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    part = summary[(summary.dataset == dataset) & (summary.k == k)].sort_values("base_params")
    for method, rows in part.groupby("method"):
        _errorbars(ax, rows["base_params"], rows, method)
        f = fits.get((dataset, method, k, "base_params", "loglinear"))
        if f is not None:
            grid = np.geomspace(*f.size_range, 50)
            ax.plot(grid, f.predict(grid), ls="--", lw=1, color=ax.lines[-1].get_color())
    _finish(ax, "base model parameters", "alignment on test groups (mean, 95% CI)",
            f"{dataset}, k = {k}: alignment vs base-model size (dashed: log-linear fits)")
    sizes = part.drop_duplicates("base_params")
    ax.set_xticks(sizes["base_params"], [f"{b}\n{n / 1e6:.0f}M" for b, n in zip(sizes["base"], sizes["base_params"])],
                  fontsize=7, rotation=30, ha="right")
    ax.minorticks_off()
    return save(fig, out, f"scaling-{dataset}-k{k}")


def fewshot(summary: pd.DataFrame, dataset: str, out: Path) -> str:
    """Alignment vs context size k, one panel per base model."""
    part = summary[summary.dataset == dataset]
    bases = list(dict.fromkeys(part.sort_values("base_params")["base"]))
    fig, axes = plt.subplots(1, len(bases), figsize=(4 * len(bases), 3.8), sharey=True, squeeze=False)
    for ax, base in zip(axes[0], bases):
        for method, rows in part[part.base == base].sort_values("k").groupby("method"):
            _errorbars(ax, rows["k"], rows, method)
        ax.set_title(base, fontsize=9)
        ax.set_xlabel("context questions k")
    axes[0, 0].set_ylabel("alignment (mean, 95% CI)")
    axes[0, -1].legend(fontsize=7)
    fig.suptitle(f"{dataset}: few-shot curves")
    return save(fig, out, f"fewshot-{dataset}")


def group_heatmap(groups: pd.DataFrame, dataset: str, base: str, k: int, out: Path) -> str:
    """Groups x methods: mean alignment per test group."""
    part = groups[(groups.dataset == dataset) & (groups.base == base) & (groups.k == k)]
    table = part.pivot_table(index="group", columns="method", values="mean")
    fig, ax = plt.subplots(figsize=(1.2 * table.shape[1] + 3, 0.35 * table.shape[0] + 1.5))
    im = ax.imshow(table.to_numpy(), aspect="auto", cmap="viridis")
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=30, ha="right")
    ax.set_yticks(range(table.shape[0]), table.index, fontsize=8)
    for (i, j), v in np.ndenumerate(table.to_numpy()):
        ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=6, color="white" if v < np.nanmean(table) else "black")
    fig.colorbar(im, ax=ax, label="alignment")
    ax.set_title(f"{dataset}, {base}, k = {k}: per test group")
    return save(fig, out, f"groups-{dataset}-k{k}")


def pareto(runs: pd.DataFrame, dataset: str, k: int, out: Path) -> str:
    """GPO alignment vs training compute; the front of runs no cheaper run beats."""
    part = runs[(runs.dataset == dataset) & (runs.k == k)].sort_values("train_flops")
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.scatter(part["train_flops"], part["alignment"], s=18, alpha=0.7, label="runs")
    front = part[part["alignment"] >= part["alignment"].cummax()]
    ax.step(front["train_flops"], front["alignment"], where="post", color="C3", label="Pareto front")
    _finish(ax, "GPO training compute (FLOPs, 6 x params x points)", "alignment on test groups (mean over groups)",
            f"{dataset}, k = {k}: alignment vs training compute")
    return save(fig, out, f"pareto-{dataset}-k{k}")


def sweep_diagnostics(trials: pd.DataFrame, importances: dict, name: str, out: Path) -> str:
    """Validation score per trial in launch order, and parameter importances."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    scores = trials["val_alignment"].to_numpy()
    colors = ["C0" if s == "completed" else "C7" for s in trials["status"]]
    a.scatter(range(len(scores)), scores, c=colors, s=20)
    a.step(range(len(scores)), np.fmax.accumulate(np.nan_to_num(scores, nan=-np.inf)), where="post", color="C3", label="best so far")
    a.set_xlabel("trial (launch order; grey = stopped early by ASHA)")
    a.set_ylabel("validation alignment")
    a.legend(fontsize=8)
    keys = sorted(importances, key=importances.get)
    b.barh(keys, [importances[k] for k in keys])
    b.set_xlabel("importance (Optuna fANOVA)")
    if not importances:
        b.text(0.5, 0.5, "too few finished trials\nfor importances", ha="center", va="center", transform=b.transAxes)
        b.set_xticks([]), b.set_yticks([])
    fig.suptitle(f"sweep {name}")
    return save(fig, out, f"sweep-{name}")
