"""Alignment quality on real data: GPO variants vs every baseline, over group splits and seeds.

For each dataset config, group split and seed, one `gpo run` (resumable: a finished run's
results are reused), then one table: per dataset, split, k and method the mean over seeds
of the mean-over-groups alignment (with its spread over seeds) and of the worst group; and
a paired comparison of each GPO variant against the best baseline on the validation groups
(per seed x group differences, bootstrap 95% interval; `gpo.analysis.paired`). Test groups
are only scored, never used to choose.

    python bench/quality.py                       # the full grid (about an hour on 2 cores)
    python bench/quality.py --splits 0.4 --seeds 0 --variants paper --steps 100   # a smoke run
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import time
from pathlib import Path

import pandas as pd

from gpo.analysis.paired import choose_reference, paired, split_roles
from gpo.analysis.report import save_bench_report
from gpo.config import load_config
from gpo.pipeline import run

DATASETS = {
    "opinionqa": ("configs/demo.yaml", []),
    # the same 17 evaluation groups; the data's 19 other groups join training (and the basis).
    # They hold complements of test groups (Male next to Female, the population next to
    # both), so a method reading the basis recovers a test group almost exactly: this
    # protocol measures that identity, not few-shot learning (BENCHMARKS.md)
    "opinionqa+19": ("configs/demo.yaml", ["data.extra_train_groups=rest"]),
    "globalopinionqa": ("configs/globalopinionqa.yaml", []),
    # robustness protocols (issue 16): a survey whose options are letters only, the option
    # wording moved into the question; test groups that answered a random 30% of the questions
    "globalopinionqa-letters": ("configs/globalopinionqa.yaml",
                                ["data.options_as_letters=true", "data.dataset=globalopinionqa-letters"]),
    "opinionqa-sparse": ("configs/demo.yaml", ["data.test_answer_fraction=0.3", "data.dataset=opinionqa-sparse"]),
}
VARIANTS = {
    # the paper's GPO: no prior, Gaussian likelihood
    "paper": ["model.prior=none", "train.loss=gaussian"],
    # a residual over the log-linear pool of the training groups, cross-entropy
    "residual-logit": ["model.prior=logit", "train.loss=ce"],
    # the paper's GPO that also reads the training groups' shares of every point
    "basis": ["model.prior=none", "model.basis=true", "train.loss=gaussian"],
    # a residual over the group-mixture fit
    "residual-mixture": ["model.prior=mixture", "train.loss=ce"],
    # three paper GPOs from consecutive seeds, their predictions averaged (the first is the "paper" run's model)
    "paper-ens3": ["model.prior=none", "train.loss=gaussian", "train.ensemble=3"],
    # the paper's GPO with short training contexts first (over the first half of 1,000 steps)
    "paper-curriculum": ["model.prior=none", "train.loss=gaussian", "train.ctx_curriculum=500"],
    "paper-curriculum-ens3": ["model.prior=none", "train.loss=gaussian", "train.ctx_curriculum=500", "train.ensemble=3"],
    "residual-logit-curriculum": ["model.prior=logit", "train.loss=ce", "train.ctx_curriculum=500"],
    # the default variant trained (and selected) for long contexts: can it use what the kernel baseline finds there?
    "residual-logit-ctx400": ["model.prior=logit", "train.loss=ce", "train.ctx_max=400", "train.val_k=200"],
    # the dataset config as shipped: its own variant, training schedule and steps
    "default": [],
}
# every other variant is fully specified here, whatever the dataset config's own defaults (its ensemble, curriculum)
TRAINING = ["train.ensemble=1", "train.ctx_curriculum=0",
            "train.batch_groups=8", "train.ctx_min=5", "train.ctx_max=50", "train.tar_min=10", "train.tar_max=50",
            "train.eval_every=100"]
EVAL = ["eval.ks=[5,10,20]", "eval.draws=5"]


def report(results: pd.DataFrame) -> str:
    tests, _ = split_roles(results)  # validation rows only choose the reference
    setting = ["dataset", "model", "train_fraction", "k"]
    lines = []
    per_seed = tests.groupby([*setting, "method", "seed"])["alignment"].agg(["mean", "min"])
    table = per_seed.groupby([*setting, "method"]).agg(mean=("mean", "mean"), sd_seeds=("mean", "std"), worst=("min", "mean"))
    lines.append(table.round(4).to_string())
    lines.append("\npaired: variant - reference (marked *), - mixture, - logit, and variant - variant; mean over seeds x groups,\n"
                 "95% interval of a bootstrap over seeds, then groups within them")
    references = choose_reference(results, setting)
    for ref in references.itertuples(index=False):
        part = tests[(tests[setting] == pd.Series({c: getattr(ref, c) for c in setting})).all(axis=1)]
        methods = set(part.method)
        variants = sorted(m for m in methods if m.startswith("gpo"))
        # the reference, the issue's reference (mixture), and the residual variants' prior (logit)
        pairs = [(v, b) for v in variants for b in dict.fromkeys([ref.reference, "mixture", "logit"]) if b in methods]
        pairs += [(b, a) for a, b in itertools.combinations(variants, 2)]  # variants against each other
        for a, b in pairs:
            d = paired(part, a, b)
            mark = "*" if b == ref.reference else ""
            lines.append(f"{ref.dataset} {ref.model} split {ref.train_fraction} k={ref.k}: {a} - {b}{mark}: "
                         f"{d['mean']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}]")
    lines.append("* the reference: " + "; ".join(f"{r} ({how})" for r, how in
                                                  dict.fromkeys(zip(references.reference, references.chosen_on))))
    lines.append(below_mean(tests, setting))
    return "\n".join(lines)


def below_mean(tests: pd.DataFrame, setting: list[str], tolerance: float = 0.001) -> str:
    """Per dataset, each method's settings where it scores below the mean prior by more than
    `tolerance` (mean over test groups), on the mean over seeds and in any single run (one
    split seed): the promise that reading the context never loses to not reading it.
    `uniform` reads nothing and is left out."""
    per_run = tests.groupby([*setting, "method", "seed"])["alignment"].mean()
    lines = []
    for label, score in (("the mean over seeds", per_run.groupby([*setting, "method"]).mean()), ("any single run", per_run)):
        margin = (score - score.xs("mean", level="method")).drop(["mean", "uniform"], level="method", errors="ignore")
        lines.append(f"\nbelow the mean prior by more than {tolerance} on {label} (every split and k run):")
        for (dataset, method), m in margin.groupby(level=["dataset", "method"]):
            low = m[m < -tolerance].reset_index()
            where = "; ".join(f"split {r.train_fraction}{f' seed {r.seed}' if 'seed' in low else ''} k={r.k} {r.alignment:+.4f}"
                              for r in low.itertuples())
            lines.append(f"{dataset} {method}: " + (f"BELOW at {where}" if len(low) else f"never (lowest margin {m.min():+.4f})"))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS))
    parser.add_argument("--splits", nargs="*", type=float, default=[0.4, 0.6, 0.8])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--variants", nargs="*", default=["paper", "residual-logit"], choices=list(VARIANTS))
    parser.add_argument("--models", nargs="*", default=["minilm"],
                        help="base models, MODEL or MODEL@LAYERS for its first LAYERS blocks (the size ladder)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--out", default="runs/bench-quality")
    parser.add_argument("--set", nargs="*", default=[], help="extra overrides for every run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    frames, walls = [], []
    runs = [(split, seed, dataset, model, variant) for split in args.splits for seed in args.seeds
            for dataset in args.datasets for model in args.models for variant in args.variants]
    for split, seed, dataset, model, variant in runs:  # the most reported setting first: a partial run is still useful
        base, _, layers = model.partition("@")
        tag = "" if model == "minilm" else f"-{base}{layers and '@' + layers}"
        name = f"{dataset}{tag}-split{split}-seed{seed}-{variant}"
        overrides = [f"out_dir={args.out}", f"name={name}", f"data.train_fraction={split}",
                     f"embed.model={base}", f"embed.layers={layers or 0}",
                     f"data.split_seed={seed}", f"train.seed={seed}",
                     *([] if variant == "default" else [f"train.steps={args.steps}", *TRAINING]),
                     *EVAL, *VARIANTS[variant], *args.set]
        config, extra = DATASETS[dataset]
        cfg = load_config(config, overrides + extra)
        done = cfg.run_dir / "results.parquet"
        start = time.perf_counter()
        results = pd.read_parquet(done) if done.is_file() else run(cfg)
        history = pd.read_parquet(cfg.run_dir / "train_history.parquet")
        members = history.assign(seed=history.get("seed", 0)).groupby("seed")  # one model, or an ensemble's members
        validated = cfg.run_dir / "validation.json"
        # single-model runs made before validation.json existed: their history's best is the tested checkpoint's score
        val = json.loads(validated.read_text())["val_score"] if validated.is_file() else history.val_score.max()
        walls.append({"run": name, "wall_s": time.perf_counter() - start, "train_s": members["wall_s"].max().sum(),
                      "best_step": members.apply(lambda h: h.loc[h.val_score.idxmax(), "step"]).median(),
                      "dataset": dataset, "split": split, "variant": variant, "steps": cfg.train.steps,
                      "val_score": val})
        frames.append(results.assign(dataset=dataset, model=model, method=results.method.where(
            ~results.method.str.startswith("gpo"), f"gpo-{variant}")))
    results = pd.concat(frames)
    # baselines do not depend on the variant: keep one copy per (run setting)
    results = results.drop_duplicates(["dataset", "model", "train_fraction", "seed", "k", "method", "group",
                                       *(["role"] if "role" in results else [])])
    text = report(results)
    budget = pd.DataFrame(walls)
    validation = budget.pivot_table(index=["dataset", "variant"], columns="split", values="val_score")
    text += "\n\nvalidation alignment of the tested model (k = train.val_k), mean over seeds: what defaults are chosen on\n"
    text += validation.round(4).to_string()
    steps = "/".join(map(str, sorted(budget.steps.unique())))
    text += f"\n\ntraining: {steps} steps per run; per run median train time {budget.train_s.median():.0f}s, " \
            f"best validation step median {budget.best_step.median():.0f}; total wall {budget.wall_s.sum():.0f}s"
    save_bench_report(text, results, Path(args.out), "all_results.parquet")


if __name__ == "__main__":
    main()
