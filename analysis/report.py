"""`gpo analyze <results...> --out DIR`: tables, scaling fits and figures as report.md + report.html.

The report states where every number came from: the files read, the resolved configs of the
runs found beside them, the command that made it, and the range each fit is valid on.
"""

from __future__ import annotations

import html
import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from gpo.analysis import plots
from gpo.analysis.aggregate import per_group, summarise
from gpo.analysis.fits import MIN_SIZES, fit
from gpo.analysis.load import load


@dataclass
class Section:
    title: str
    text: str = ""
    table: pd.DataFrame | None = None
    figures: list = field(default_factory=list)


def plain(value):
    """A parquet cell as a readable Python value (64.0 -> 64, numpy scalars -> Python)."""
    value = value.item() if hasattr(value, "item") else value
    return int(value) if isinstance(value, float) and value.is_integer() else value


def markdown_table(df: pd.DataFrame) -> str:
    cells = df.astype(str).to_numpy().tolist()
    head = "| " + " | ".join(map(str, df.columns)) + " |\n|" + "---|" * len(df.columns) + "\n"
    return head + "\n".join("| " + " | ".join(row) + " |" for row in cells)


def fmt_summary(summary: pd.DataFrame) -> pd.DataFrame:
    out = summary[[c for c in ("dataset", "base", "method", "k") if c in summary]].copy()
    out["mean [95% CI]"] = [f"{m:.4f} [{lo:.4f}, {hi:.4f}]" for m, lo, hi in zip(summary["mean"], summary["lo"], summary["hi"])]
    out["worst group [95% CI]"] = [f"{m:.4f} [{lo:.4f}, {hi:.4f}]" for m, lo, hi in
                                   zip(summary["worst"], summary["worst_lo"], summary["worst_hi"])]
    out["units x groups"] = [f"{u} x {g}" for u, g in zip(summary["units"], summary["groups"])]
    return out


AXES = {"base_params": "base-model parameters", "gpo_params": "GPO parameters", "train_flops": "training FLOPs"}


def scaling_fits(tests: pd.DataFrame) -> tuple[dict, pd.DataFrame, list[str]]:
    """Fits per (dataset, method, k) against base parameters, and for GPO against its own size
    and training compute, wherever there are enough distinct sizes. Methods that score the
    same at every size (they do not read the embeddings) are listed, not fitted."""
    fits, rows, constant = {}, [], set()
    unit_means = tests.groupby(["dataset", "method", "k", "base_params", "seed", "split_seed", "train_fraction"],
                               dropna=False)["alignment"].mean().reset_index()
    for axis, frame in (("base_params", unit_means), *(
            (col, tests[tests.method.str.startswith("gpo")].groupby(["dataset", "method", "k", col, "seed", "split_seed", "train_fraction"],
                                                       dropna=False)["alignment"].mean().reset_index())
            for col in ("gpo_params", "train_flops") if col in tests and tests[col].notna().any())):
        for (dataset, method, k), cell in frame.dropna(subset=[axis]).groupby(["dataset", "method", "k"]):
            cell = cell[cell[axis] > 0]
            if cell[axis].nunique() < min(MIN_SIZES.values()):
                continue
            if np.ptp(cell.groupby(axis)["alignment"].mean()) < 1e-9:
                constant.add(method)
                continue
            for kind in MIN_SIZES:
                row = {"dataset": dataset, "method": method, "k": k, "against": AXES[axis]}
                try:
                    f = fit(kind, cell[axis], cell["alignment"])
                except (RuntimeError, ValueError) as e:
                    rows.append({**row, "fit": kind, "coefficients [95% CI]": f"no fit ({e})"})
                    continue
                fits[(dataset, method, k, axis, kind)] = f
                rows.append({**row, "fit": f.formula, "coefficients [95% CI]": f.terms(),
                             "fitted range of N": f"{f.size_range[0]:.3g} to {f.size_range[1]:.3g}",
                             "observations": f.n, "note": "; ".join(f.notes)})
    return fits, pd.DataFrame(rows).fillna(""), sorted(constant)


def sweep_importances(trials: pd.DataFrame) -> dict:
    """Optuna's fANOVA importances of the searched parameters, from the finished trials."""
    import optuna

    params = [c for c in trials.columns if c.startswith("param/") and trials[c].notna().any()]
    done = trials.dropna(subset=["val_alignment"])
    if len(done) < 3 or not params:
        return {}
    dists = {}
    for c in params:
        values = done[c]
        if pd.api.types.is_numeric_dtype(values) and values.nunique() > 1:
            lo, hi = float(values.min()), float(values.max())
            integral = all(float(v).is_integer() for v in values)
            dists[c] = (optuna.distributions.IntDistribution(int(lo), int(hi)) if integral
                        else optuna.distributions.FloatDistribution(lo, hi, log=lo > 0 and hi / lo > 20))
        elif values.nunique() > 1:
            dists[c] = optuna.distributions.CategoricalDistribution(sorted(values.astype(str).unique()))
    if not dists:
        return {}
    study = optuna.create_study(direction="maximize")
    for _, row in done.iterrows():
        p = {c: (str(row[c]) if isinstance(d, optuna.distributions.CategoricalDistribution)
                 else int(row[c]) if isinstance(d, optuna.distributions.IntDistribution) else float(row[c]))
             for c, d in dists.items()}
        study.add_trial(optuna.trial.create_trial(params=p, distributions=dists, value=float(row["val_alignment"])))
    importances = optuna.importance.get_param_importances(study)
    return {k.removeprefix("param/"): v for k, v in importances.items()}


def configs_beside(files: list[Path]) -> list[tuple[str, str]]:
    out = []
    for f in files:
        # a run's own config; for a study or benchmark table, its first run's (they differ only as listed)
        for config in sorted(f.parent.glob("config.yaml")) + sorted(f.parent.glob("*/config.yaml"))[:1] + \
                sorted(f.parent.glob("final/*/config.yaml"))[:1]:
            # sweeps resolve their storage to an absolute path (trials run elsewhere); a report
            # is read on other machines, so show paths relative to where it was made
            out.append((str(config), config.read_text().replace(f"{Path.cwd()}/", "")))
    return out


def analyze(paths, out: str | Path, command: str | None = None) -> Path:
    out = Path(out)
    figures = out / "figures"
    tests, trials, files = load(paths)
    summary = summarise(tests)
    groups = per_group(tests)
    fits, fit_table, constant = scaling_fits(tests)
    sections = [Section("Results", "Alignment on the test groups: the mean over groups and the worst group, each "
                        "averaged over units (seed x group split) with a 95% two-level bootstrap interval "
                        "(units, then groups). A resampled worst group is never below the sample's, so the worst group's "
                        "interval is one-sided: read its upper end as the spread.", fmt_summary(summary))]
    scaling_figs = []
    for (dataset, k), part in summary.groupby(["dataset", "k"]):
        if part["base_params"].nunique() >= 2:
            scaling_figs.append(plots.scaling(summary, fits, dataset, k, figures))
    fit_text = ("95% bootstrap intervals over the observations (units x sizes); a fit says nothing outside "
                "the range of N it was fitted on." if len(fit_table) else
                "Fewer than three base-model sizes (or GPO sizes / compute budgets): nothing to fit.")
    if constant:
        fit_text += f" Not fitted, identical at every size (they do not read the embeddings): {', '.join(constant)}."
    sections.append(Section("Scaling fits", fit_text, fit_table if len(fit_table) else None, scaling_figs))
    few = [plots.fewshot(summary, d, figures) for d, part in summary.groupby("dataset") if part["k"].nunique() >= 2]
    if few:
        sections.append(Section("Few-shot curves", "Alignment against the number of context questions k.", None, few))
    heat = []
    for (dataset, k), part in summary.groupby(["dataset", "k"]):
        largest = part.sort_values("base_params")["base"].iloc[-1]
        heat.append(plots.group_heatmap(groups, dataset, largest, k, figures))
    sections.append(Section("Per group", "Mean alignment of each test group (largest base model).", None, heat))
    if "train_flops" in tests and tests["train_flops"].notna().any():
        key = ["dataset", "k", "source", "seed", "split_seed", "train_fraction", "train_flops"]
        runs = tests[tests.method.str.startswith("gpo")].groupby(key, dropna=False)["alignment"].mean().reset_index()
        sections.append(Section("Compute", "Each GPO run's alignment against its training compute.", None,
                                [plots.pareto(runs, d, k, figures) for (d, k), _ in runs.groupby(["dataset", "k"])]))
    if not trials.empty:
        for (name, base, k), part in trials.groupby(["study", "base_model", "k"]):
            label = f"{name}-{Path(str(base)).name}-k{k}"
            imp = sweep_importances(part)
            best = part.loc[part["val_alignment"].idxmax()]
            chosen = {c.removeprefix("param/"): plain(best[c]) for c in part.columns if c.startswith("param/")}
            text = (f"{len(part)} trials ({int((part.status == 'completed').sum())} completed, "
                    f"{int((part.status == 'stopped early').sum())} stopped early); best validation "
                    f"{best['val_alignment']:.4f} with {chosen}")
            sections.append(Section(f"Sweep {label}", text, None, [plots.sweep_diagnostics(part, imp, label, figures)]))
    command = command or " ".join(shlex.quote(a) for a in sys.argv)
    provenance = [f"- command: `{command}`", *(f"- read: `{f}`" for f in files)]
    if "embed_model" in tests:
        provenance.append(f"- base models: {', '.join(sorted(tests['base'].dropna().unique()))}")
    sections.append(Section("Provenance", "\n".join(provenance)))
    configs = configs_beside(files)
    if configs:
        sections.append(Section("Configs", "\n\n".join(f"`{p}`:\n\n```yaml\n{t}```" for p, t in configs[:6])))
    out.mkdir(parents=True, exist_ok=True)
    summary.to_csv(out / "summary.csv", index=False)
    (out / "fits.json").write_text(json.dumps({" | ".join(map(str, k)): vars(v) for k, v in fits.items()}, indent=1, default=float))
    (out / "report.md").write_text(render_markdown(sections))
    (out / "report.html").write_text(render_html(sections))
    return out / "report.md"


def render_markdown(sections: list[Section]) -> str:
    parts = ["# GPO study report\n"]
    for s in sections:
        parts.append(f"## {s.title}\n")
        if s.text:
            parts.append(s.text + "\n")
        if s.table is not None:
            parts.append(markdown_table(s.table) + "\n")
        parts += [f"![{f}](figures/{f})\n" for f in s.figures]
    return "\n".join(parts)


def render_html(sections: list[Section]) -> str:
    body = ["<h1>GPO study report</h1>"]
    for s in sections:
        body.append(f"<h2>{html.escape(s.title)}</h2>")
        if s.text:
            body.append("<pre style='white-space: pre-wrap'>" + html.escape(s.text) + "</pre>")
        if s.table is not None:
            body.append(s.table.to_html(index=False, border=0))
        body += [f"<p><img src='figures/{f}' style='max-width: 100%'></p>" for f in s.figures]
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto} table{border-collapse:collapse;font-size:13px} "
             "td,th{padding:3px 8px;border-bottom:1px solid #ddd}")
    head = f"<meta charset='utf-8'><title>GPO study report</title><style>{style}</style>"
    return f"<!doctype html><html><head>{head}</head><body>{''.join(body)}</body></html>"
