"""`gpo analyze <results...> --out DIR`: a summary, tables, scaling fits and figures as
report.md + report.html.

The report opens with the summary (`summary.py`: who wins, by how much, GPO against the
reference baseline, whether the scaling fit means anything). Every comparison is paired
against a reference chosen on validation rows (`paired.py`); reported numbers come from test
rows only. The report states where every number came from: the files read, the resolved
configs of the runs found beside them, the command that made it, and the range each fit is
valid on.
"""

from __future__ import annotations

import html
import json
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from gpo.analysis import plots
from gpo.analysis.aggregate import UNIT, summarise
from gpo.analysis.fits import MIN_SIZES, fit
from gpo.analysis.load import load
from gpo.analysis.paired import CHOSEN_ON_VAL, against_reference, choose_reference, differences, is_gpo, paired, split_roles
from gpo.analysis.summary import CELL, summarise_study, winners


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


def budget(rows: pd.DataFrame) -> pd.Series:
    """A GPO run's training configuration as far as compute goes (its base model, its size, a
    sweep's chosen config): runs that differ only by seed spend different FLOPs (the tokens
    drawn, the step of the best checkpoint), which is no scaling axis."""
    parts = [rows[c].astype(str) for c in ("base_params", "gpo_params", "config") if c in rows]
    return pd.concat(parts, axis=1).agg("|".join, axis=1) if parts else rows["train_flops"].astype(str)


def scaling_fits(tests: pd.DataFrame) -> tuple[dict, pd.DataFrame, list[str]]:
    """Fits per (dataset, method, k) against base parameters, and for GPO against its own size
    and training compute, wherever there are enough distinct sizes (for GPO's own: distinct
    configurations, not seeds). Methods that score the same at every size (they do not read
    the embeddings) are listed, not fitted."""
    fits, rows, constant = {}, [], set()
    unit = ["seed", "split_seed", "train_fraction"]
    unit_means = tests.groupby(["dataset", "method", "k", "base_params", *unit], dropna=False)["score"].mean().reset_index()
    gpo = tests[is_gpo(tests)].assign(budget=budget)
    for axis, frame in (("base_params", unit_means.assign(budget=unit_means["base_params"])), *(
            (col, gpo.groupby(["dataset", "method", "k", col, "budget", *unit], dropna=False)["score"].mean().reset_index())
            for col in ("gpo_params", "train_flops") if col in tests and tests[col].notna().any())):
        for (dataset, method, k), cell in frame.dropna(subset=[axis]).groupby(["dataset", "method", "k"]):
            cell = cell[cell[axis] > 0]
            if min(cell[axis].nunique(), cell["budget"].nunique()) < min(MIN_SIZES.values()):
                continue
            if np.ptp(cell.groupby(axis)["score"].mean()) < 1e-9:
                constant.add(method)
                continue
            for kind in MIN_SIZES:
                row = {"dataset": dataset, "method": method, "k": k, "against": AXES[axis]}
                try:
                    f = fit(kind, cell[axis], cell["score"])
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
    done = trials.dropna(subset=["val_score"])
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
        study.add_trial(optuna.trial.create_trial(params=p, distributions=dists, value=float(row["val_score"])))
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


@dataclass
class Analysis:
    report: Path  # report.md (report.html beside it)
    summary: str  # the first screen, as plain text for a terminal


def compute_runs(tests: pd.DataFrame, references: pd.DataFrame) -> pd.DataFrame:
    """Each GPO run (unit) with its training compute and its paired difference to its
    setting's reference over the run's own test groups."""
    unit = ["source", *(c for c in UNIT if c in tests)]
    gpo = tests[is_gpo(tests) & (tests.get("train_flops", pd.Series(0.0, index=tests.index)).fillna(0) > 0)]
    rows = []
    for ref in references.itertuples(index=False):
        cell = tests[(tests.dataset == ref.dataset) & (tests.base == ref.base) & (tests.k == ref.k)]
        for (method, *key), run in gpo[(gpo.dataset == ref.dataset) & (gpo.base == ref.base) & (gpo.k == ref.k)].groupby(
                ["method", *unit], dropna=False):
            rows_of_run = cell.merge(pd.DataFrame([dict(zip(unit, key))]), on=unit)  # (a merge matches missing values too)
            rows.append({"dataset": ref.dataset, "base": ref.base, "k": ref.k, "method": method, "family": "gpo",
                         "reference": ref.reference,
                         "chosen_on": ref.chosen_on, "train_flops": run["train_flops"].iloc[0], "budget": budget(run).iloc[0],
                         "label": ref.base, **paired(rows_of_run, method, ref.reference)})
    return pd.DataFrame(rows)


def group_differences(tests: pd.DataFrame, references: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, method, test group): method - reference, the mean over units."""
    out, family = [], dict(zip(tests.method, tests.family))
    for ref in references.itertuples(index=False):
        cell = tests[(tests.dataset == ref.dataset) & (tests.base == ref.base) & (tests.k == ref.k)]
        for method in set(cell.method) - {ref.reference}:
            d = differences(cell, method, ref.reference).groupby("task")["score"].mean().rename("mean").reset_index()
            out.append(d.assign(dataset=ref.dataset, base=ref.base, k=ref.k, method=method, family=family[method],
                                reference=ref.reference, chosen_on=ref.chosen_on))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def analyze(paths, out: str | Path, command: str | None = None) -> Analysis:
    """Tables, fits and figures from run or study results, written under `out`."""
    out = Path(out)
    figures = out / "figures"
    rows, trials, files = load(paths)
    tests, val = split_roles(rows)  # reported numbers come from test rows only
    references = choose_reference(rows, CELL)
    comparisons = against_reference(rows, references, CELL).merge(
        tests[["dataset", "base", "base_params"]].drop_duplicates(), on=["dataset", "base"])
    summary = summarise(tests)
    fits, fit_table, constant = scaling_fits(tests)
    summary_text, summary_table = summarise_study(tests, comparisons, winners(tests), fits)
    sections = [
        Section("Summary", f"{summary_text}\n\n{paired_note(references)}", summary_table),
        Section("Results", "Alignment on the test groups: the mean over groups and the worst group, each averaged over "
                "units (seed x group split) with a 95% two-level bootstrap interval (units, then groups). A resampled "
                "worst group is never below the sample's, so the worst group's interval is one-sided: read its upper "
                "end as the spread.", fmt_summary(summary)),
        scaling_section(tests, comparisons, fit_table, constant, figures),
        fewshot_section(tests, comparisons, figures),
        per_group_section(tests, references, figures),
        compute_section(compute_runs(tests, references), figures),
        *sweep_sections(trials, val, references, figures),
        *provenance_sections(tests, files, command),
    ]
    out.mkdir(parents=True, exist_ok=True)
    summary.to_csv(out / "summary.csv", index=False)
    comparisons.to_csv(out / "paired.csv", index=False)
    (out / "fits.json").write_text(json.dumps({" | ".join(map(str, k)): vars(v) for k, v in fits.items()}, indent=1, default=float))
    (out / "report.md").write_text(render_markdown(sections))
    (out / "report.html").write_text(render_html(sections))
    terminal = summary_text.replace("**", "") + "\n\n" + summary_table.to_string(index=False)
    return Analysis(out / "report.md", terminal)


def paired_note(references: pd.DataFrame) -> str:
    if not len(references):
        return "No reference baseline (no validation rows, no mean prior): no paired figures."
    chosen = "; ".join(f"{r} ({c})" for r, c in dict.fromkeys(zip(references["reference"], references["chosen_on"])))
    return ("The figures plot each method minus the reference baseline (the black zero line), paired per (unit, test "
            "group), with a 95% two-level bootstrap interval; `uniform` is left out of them. The reference: " + chosen + ".")


def scaling_section(tests: pd.DataFrame, comparisons: pd.DataFrame, fit_table: pd.DataFrame, constant: list[str],
                    figures: Path) -> Section:
    sizes = tests.groupby("dataset")["base_params"].nunique()
    compared = set(comparisons["dataset"])
    scaling_figs = [plots.scaling(comparisons, d, figures) for d in sizes.index if sizes[d] >= 2 and d in compared]
    text = ("95% bootstrap intervals over the observations (units x sizes); a fit says nothing outside the range of N it "
            "was fitted on." if len(fit_table) else
            "Fewer than three base-model sizes (or GPO sizes / compute budgets): nothing to fit.")
    if constant:
        text += f" Not fitted, identical at every size (they do not read the embeddings): {', '.join(constant)}."
    if not scaling_figs:
        text += " No figure against base-model size (one base model per dataset, or no reference)."
    return Section("Scaling with the base model", text, fit_table if len(fit_table) else None, scaling_figs)


def fewshot_section(tests: pd.DataFrame, comparisons: pd.DataFrame, figures: Path) -> Section:
    ks = tests.groupby("dataset")["k"].nunique()
    few = [plots.fewshot(comparisons, d, figures) for d in ks.index if ks[d] >= 2 and d in set(comparisons["dataset"])]
    return Section("Few-shot curves", "Each method minus the reference against the number of context questions k."
                   if few else "No few-shot figure (one context size k per dataset, or no reference).", None, few)


def per_group_section(tests: pd.DataFrame, references: pd.DataFrame, figures: Path) -> Section:
    differences = group_differences(tests, references)
    heat = []
    for dataset, part in tests.groupby("dataset"):
        largest = part.sort_values("base_params")["base"].iloc[-1]
        if len(differences) and ((differences.dataset == dataset) & (differences.base == largest)).any():
            heat.append(plots.groups(differences, dataset, largest, figures))
    return Section("Per group", "Each test group: each method minus the reference on that group (mean over units), "
                   "for the largest base model.", None, heat)


def compute_section(runs: pd.DataFrame, figures: Path) -> Section:
    budgets = runs.groupby("dataset")["budget"].nunique() if len(runs) else pd.Series(dtype=int)
    compute_figs = [plots.compute(runs, d, figures) for d in budgets.index if budgets[d] >= 2]
    if compute_figs:
        text = "Each GPO run minus the reference (paired over its test groups) against its training compute."
    elif len(runs):
        text = (f"{runs.drop_duplicates(['dataset', 'base', 'method', 'train_flops']).shape[0]} GPO run(s), each dataset's "
                f"from one training configuration ({', '.join(f'{f:.3g}' for f in sorted(runs['train_flops'].unique()))} "
                "FLOPs: runs of one configuration differ by seed only, in the tokens drawn and the step of the best "
                "checkpoint): nothing to plot against compute.")
    else:
        text = "No run recorded a positive training compute: no figure against compute."
    return Section("Compute", text, None, compute_figs)


def sweep_sections(trials: pd.DataFrame, val: pd.DataFrame, references: pd.DataFrame, figures: Path) -> list[Section]:
    """One section per searched (study, base model, k): its trials, best setting and diagnostics."""
    if trials.empty:
        return []
    sections = []
    for (name, base, k), part in trials.groupby(["study", "base_model", "k"]):
        label = f"{name}-{Path(str(base)).name}-k{k}"
        imp = sweep_importances(part)
        best = part.loc[part["val_score"].idxmax()]
        chosen = {c.removeprefix("param/"): plain(best[c]) for c in part.columns if c.startswith("param/")}
        text = (f"{len(part)} trials ({int((part.status == 'completed').sum())} completed, "
                f"{int((part.status == 'stopped early').sum())} stopped early); best validation "
                f"{best['val_score']:.4f} with {chosen}")
        reference = sweep_reference(val, references, name, base, k)
        if reference:
            text += f"; the best baseline on the same validation tasks, {reference[0]}, scores {reference[1]:.4f}"
        if not imp:
            text += "; too few finished trials for parameter importances"
        sections.append(Section(f"Sweep {label}", text, None, [plots.sweep_diagnostics(part, imp, label, figures, reference)]))
    return sections


def provenance_sections(tests: pd.DataFrame, files: list[Path], command: str | None) -> list[Section]:
    """The command, the files read, the base models and the configs beside the results."""
    command = command or " ".join(shlex.quote(a) for a in sys.argv)
    provenance = [f"- command: `{command}`", *(f"- read: `{f}`" for f in files)]
    if "embed_model" in tests:
        provenance.append(f"- base models: {', '.join(sorted(tests['base'].dropna().unique()))}")
    sections = [Section("Provenance", "\n".join(provenance))]
    configs = configs_beside(files)
    if configs:
        sections.append(Section("Configs", "\n\n".join(f"`{p}`:\n\n```yaml\n{t}```" for p, t in configs[:6])))
    return sections


def sweep_reference(val: pd.DataFrame, references: pd.DataFrame, study: str, base_model: str, k: int) -> tuple | None:
    """(name, validation score) of the reference baseline of a sweep's final runs, when
    it was chosen on their validation rows."""
    if val.empty or "study" not in val:
        return None
    rows = val[(val.study == study) & (val.base_model == base_model) & (val.k == k)]
    chosen = references[(references.base.isin(rows.base.unique())) & (references.k == k) &
                        references.chosen_on.str.startswith(CHOSEN_ON_VAL)]
    if rows.empty or chosen.empty:
        return None
    name = chosen["reference"].iloc[0]
    score = rows[rows.method == name].groupby([c for c in UNIT if c in rows])["score"].mean().mean()
    return name, float(score)


def save_bench_report(text: str, results: pd.DataFrame, out: Path, table: str) -> None:
    """Print a benchmark's report and keep it, with the per-group results it was computed from, in `out`."""
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    results.to_parquet(out / table)
    (out / "report.txt").write_text(text + "\n")


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


def text_html(text: str) -> str:
    """The little markdown a section's text uses: ### headings, - lists, **bold**, `code`, ``` blocks."""
    out = []
    for part in re.split(r"(```.*?```)", text, flags=re.S):
        if part.startswith("```"):
            out.append("<pre>" + html.escape(re.sub(r"^```\w*\n|```$", "", part)) + "</pre>")
            continue
        for block in filter(None, (b.strip("\n") for b in part.split("\n\n"))):
            inline = re.sub(r"`([^`]+)`", r"<code>\1</code>", re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(block)))
            if inline.startswith("### "):
                out.append(f"<h3>{inline[4:]}</h3>")
            elif inline.startswith("- "):
                out.append("<ul>" + "".join(f"<li>{item}</li>" for item in inline[2:].split("\n- ")) + "</ul>")
            else:
                out.append(f"<p>{inline}</p>")
    return "".join(out)


def render_html(sections: list[Section]) -> str:
    body = ["<h1>GPO study report</h1>"]
    for s in sections:
        body.append(f"<h2>{html.escape(s.title)}</h2>")
        if s.text:
            body.append(text_html(s.text))
        if s.table is not None:
            body.append(s.table.to_html(index=False, border=0))
        body += [f"<p><img src='figures/{f}' style='max-width: 100%'></p>" for f in s.figures]
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto} table{border-collapse:collapse;font-size:13px} "
             "td,th{padding:3px 8px;border-bottom:1px solid #ddd}")
    head = f"<meta charset='utf-8'><title>GPO study report</title><style>{style}</style>"
    return f"<!doctype html><html><head>{head}</head><body>{''.join(body)}</body></html>"
