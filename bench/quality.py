"""Quality on real data: GPO variants vs every baseline, over splits and seeds, on the group
protocols (OpinionQA, GlobalOpinionQA, their robustness and new-question variants, ATP wave
41's weighted groups) and on the individual task (ATP wave 41's respondents).

For each protocol, split and seed, one `gpo run` (resumable: a finished run's results are
reused), then one table: per protocol, split, k and method the mean over seeds of the mean over
test groups (or respondents) of the protocol's score (alignment; accuracy for respondents) with
its spread over seeds, and of the worst group (worst decile of respondents); and a paired
comparison of each GPO variant, as trained and shrunk, against the best baseline on the
validation tasks (per seed x task differences, bootstrap 95% interval; `gpo.analysis.paired`).
Test tasks are only scored, never used to choose.

    python bench/quality.py                       # the paper's protocols (about an hour on 2 cores)
    python bench/quality.py --datasets opinionqa-new globalopinionqa-new --splits 0.4 0.6 0.8
    python bench/quality.py --datasets individual --splits 0.4 --variants paper residual-population
    python bench/quality.py --splits 0.4 --seeds 0 --variants paper --steps 100   # a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from gpo.analysis.paired import choose_reference, paired, split_roles
from gpo.analysis.report import save_bench_report
from gpo.config import load_config
from gpo.methods import SHRUNK
from gpo.pipeline import run
from gpo.results import read_results


@dataclass(frozen=True)
class Protocol:
    config: str
    overrides: list = field(default_factory=list)
    unit: str = "group"
    values: dict = field(default_factory=dict)  # dotted key -> value, where YAML text would not do (group names)


# GlobalOpinionQA's 14 countries outside the paper's 14 that answered the most questions (184 to
# 309 each), fixed before any run on them: groups no choice of this project has seen
OTHER_COUNTRIES = ["Jordan", "Pakistan", "Turkey", "Mexico", "Russia", "Britain", "Italy", "Kenya", "Lebanon", "Indonesia",
                   "Poland", "Philippines", "Tunisia", "S. Korea"]


W41 = "${GPO_DATA_DIR}/opinionqa/human_resp/American_Trends_Panel_W41"
DATASETS = {
    "opinionqa": Protocol("configs/demo.yaml"),
    # the same 17 evaluation groups; the data's 19 other groups join training (and the basis).
    # They hold complements of test groups (Male next to Female, the population next to
    # both), so a method reading the basis recovers a test group almost exactly: this
    # protocol measures that identity, not few-shot learning (BENCHMARKS.md)
    "opinionqa+19": Protocol("configs/demo.yaml", ["data.extra_train_groups=rest"]),
    "globalopinionqa": Protocol("configs/globalopinionqa.yaml"),
    # robustness: a survey whose options are letters only, the option wording moved into the
    # question; test groups that answered a random 30% of the questions
    "globalopinionqa-letters": Protocol("configs/globalopinionqa.yaml",
                                        ["data.options_as_letters=true", "data.dataset=globalopinionqa-letters"]),
    "opinionqa-sparse": Protocol("configs/demo.yaml", ["data.test_answer_fraction=0.3", "data.dataset=opinionqa-sparse"]),
    # new questions: test (and validation) groups scored on a fifth of the questions that no
    # training group answered, contexts from the others
    "opinionqa-new": Protocol("configs/demo.yaml", ["data.new_question_fraction=0.2", "data.dataset=opinionqa-new"]),
    "globalopinionqa-new": Protocol("configs/globalopinionqa.yaml",
                                    ["data.new_question_fraction=0.2", "data.dataset=globalopinionqa-new"]),
    # a fresh protocol, for claims only (nothing is chosen on it): the paper's 17 groups as
    # survey-weighted distributions of ATP wave 41's respondents
    "atp-w41-groups": Protocol("configs/demo.yaml", [f"data.source={W41}", "data.dataset=atp-w41-groups",
                                                     "data.require_ordinal=false"]),
    # ... and its new-questions protocol: a fifth of the questions answered by no training group
    "atp-w41-groups-new": Protocol("configs/demo.yaml", [f"data.source={W41}", "data.dataset=atp-w41-groups-new",
                                                         "data.require_ordinal=false", "data.new_question_fraction=0.2"]),
    # a fresh protocol, for claims only: the paper's GlobalOpinionQA protocol on 14 other countries
    "globalopinionqa-others": Protocol("configs/globalopinionqa.yaml", ["data.dataset=globalopinionqa-others"],
                                       values={"data.groups": OTHER_COUNTRIES}),
    # the paper's third task: every respondent of wave 41 a task
    "individual": Protocol("configs/individual.yaml", unit="respondent"),
}
VARIANTS = {
    # the paper's GPO: no prior, Gaussian likelihood
    "paper": ["model.prior=none", "train.loss=gaussian"],
    # a residual over the log-linear pool of the training groups, cross-entropy
    "residual-logit": ["model.prior=logit", "train.loss=ce"],
    # the paper's GPO that also reads the training groups' shares of every point
    "basis": ["model.prior=none", "model.features=[embedding,basis]", "train.loss=gaussian"],
    # ... and the training groups' shares of every point as features
    "residual-logit-basis": ["model.prior=logit", "model.features=[embedding,basis]", "train.loss=ce"],
    # a residual over the kernel baseline (the log-linear pool plus a kernel correction)
    "residual-kernel": ["model.prior=kernel", "train.loss=ce"],
    # the paper's GPO with the paper's readout (a target's own state alone): GPO before the ridge readout
    "paper-mlp": ["model.prior=none", "train.loss=gaussian", "model.readout=mlp"],
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
    # a residual over the training groups' mean (no context: GPO alone reads it)
    "residual-mean": ["model.prior=mean", "train.loss=ce"],
    # respondents: residuals over the population's and the person's demographic cell's answer shares
    "residual-population": ["model.prior=population", "train.loss=ce"],
    "residual-demographic": ["model.prior=demographic", "train.loss=ce"],
    # ... with the options' cross-fitted loadings on the training respondents' low-rank axes as features
    "residual-population-loadings": ["model.prior=population", "model.features=[embedding,loadings]", "train.loss=ce"],
    "residual-demographic-loadings": ["model.prior=demographic", "model.features=[embedding,loadings]", "train.loss=ce"],
    "residual-lowrank": ["model.prior=lowrank", "train.loss=ce"],
    "residual-lowrank-loadings": ["model.prior=lowrank", "model.features=[embedding,loadings]", "train.loss=ce"],
    "paper-loadings": ["model.prior=none", "model.features=[embedding,loadings]", "train.loss=gaussian"],
    # the protocol's config as shipped: its own variant, training schedule and steps
    "default": [],
}
# every other variant is fully specified here, whatever the config's own defaults (its ensemble,
# curriculum); respondents keep their config's task sizes (its contexts up to 40 answers)
TRAINING = {"group": ["train.ensemble=1", "train.ctx_curriculum=0", "train.batch_groups=8", "train.ctx_min=5",
                      "train.ctx_max=50", "train.tar_min=10", "train.tar_max=50", "train.eval_every=100"],
            "respondent": ["train.ensemble=1", "train.ctx_curriculum=0", "train.eval_every=250"]}
EVAL = {"group": ["eval.ks=[0,5,10,20]", "eval.draws=5"], "respondent": ["eval.ks=[0,5,10,20,40]", "eval.draws=5"]}


def worst(scores: pd.Series) -> float:
    """The worst group's score, or over respondents (thousands) the mean of the worst decile."""
    return scores.min() if len(scores) < 100 else scores.nsmallest(max(1, len(scores) // 10)).mean()


def report(results: pd.DataFrame) -> str:
    tests, _ = split_roles(results)  # validation rows only choose the reference
    setting = ["dataset", "model", "train_fraction", "k"]
    lines = [f"scores: {', '.join(f'{d} {m}' for d, m in tests.groupby('dataset').metric.first().items())}; "
             "worst: the worst test group (for respondents the mean of the worst decile)"]
    per_seed = tests.groupby([*setting, "method", "seed"])["score"].agg(["mean", worst])
    table = per_seed.groupby([*setting, "method"]).agg(mean=("mean", "mean"), sd_seeds=("mean", "std"), worst=("worst", "mean"))
    lines.append(table.round(4).to_string())
    if "log_loss" in tests and tests["log_loss"].notna().any():  # respondents: the log loss of their answers too
        losses = tests.dropna(subset=["log_loss"]).groupby([*setting, "method", "seed"])["log_loss"].mean()
        lines.append("\nlog loss of the answer (lower is better), mean over seeds of the mean over respondents:\n"
                     + losses.groupby([*setting, "method"]).mean().unstack("k").round(4).to_string())
    lines.append("\npaired: method - reference (marked *); GPO - mixture, - logit, and variant - variant; mean over seeds x tasks,\n"
                 "95% interval of a bootstrap over seeds, then tasks within them")
    references = choose_reference(results, setting)
    for ref in references.itertuples(index=False):
        part = tests[(tests[setting] == pd.Series({c: getattr(ref, c) for c in setting})).all(axis=1)]
        methods = set(part.method)
        variants = sorted(set(part.method[part.family == "gpo"]))
        # every method against the reference; GPO against the group mixture and its prior (logit) and each other
        pairs = [(m, ref.reference) for m in sorted(methods - {ref.reference, "uniform"})]
        pairs += [(v, b) for v in variants for b in ("mixture", "logit") if b in methods and b != ref.reference]
        pairs += [(b, a) for a, b in itertools.combinations(variants, 2)]
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
    """Per dataset, each method's settings where it scores below the no-context mean prior (for
    respondents the population) by more than `tolerance` (mean over test tasks), on the mean
    over seeds and in any single run (one split seed). `uniform` reads nothing and is left out."""
    per_run = tests.groupby([*setting, "method", "seed"])["score"].mean()
    lines = []
    for label, score in (("the mean over seeds", per_run.groupby([*setting, "method"]).mean()), ("any single run", per_run)):
        lines.append(f"\nbelow the mean prior by more than {tolerance} on {label} (every split and k run):")
        for dataset, part in score.groupby(level="dataset"):
            prior = "mean" if "mean" in part.index.get_level_values("method") else "population"
            margin = (part - part.xs(prior, level="method")).drop([prior, "uniform"], level="method", errors="ignore")
            for method, m in margin.groupby(level="method"):
                low = m[m < -tolerance].reset_index()
                where = "; ".join(f"split {r.train_fraction}{f' seed {r.seed}' if 'seed' in low else ''} k={r.k} {r.score:+.4f}"
                                  for r in low.itertuples())
                lines.append(f"{dataset} {method}: " + (f"BELOW at {where}" if len(low) else f"never (lowest margin {m.min():+.4f})"))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="*", default=["opinionqa", "globalopinionqa"], choices=list(DATASETS))
    parser.add_argument("--splits", nargs="*", type=float, default=[0.4, 0.6, 0.8])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--variants", nargs="*", default=["paper", "residual-logit"], choices=list(VARIANTS))
    parser.add_argument("--models", nargs="*", default=["minilm"],
                        help="base models, MODEL or MODEL@LAYERS for its first LAYERS blocks (the size ladder)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--out", default="runs/bench-quality")
    parser.add_argument("--set", nargs="*", default=[], help="extra overrides for every run")
    parser.add_argument("--choose", action="store_true",
                        help="report the validation tasks in place of the test tasks: for choosing defaults (no test score is shown)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    frames, walls = [], []
    runs = [(split, seed, dataset, model, variant) for split in args.splits for seed in args.seeds
            for dataset in args.datasets for model in args.models for variant in args.variants]
    for split, seed, dataset, model, variant in runs:  # the most reported setting first: a partial run is still useful
        protocol = DATASETS[dataset]
        base, _, layers = model.partition("@")
        tag = "" if model == "minilm" else f"-{base}{layers and '@' + layers}"
        name = f"{dataset}{tag}-split{split}-seed{seed}-{variant}"
        overrides = [f"out_dir={args.out}", f"name={name}", f"data.train_fraction={split}",
                     f"embed.model={base}", f"embed.layers={layers or 0}",
                     f"data.split_seed={seed}", f"train.seed={seed}",
                     *([] if variant == "default" else [f"train.steps={args.steps}", *TRAINING[protocol.unit]]),
                     *EVAL[protocol.unit], *VARIANTS[variant], *protocol.overrides, *args.set]
        cfg = load_config(protocol.config, overrides, protocol.values)
        done = cfg.run_dir / "results.parquet"
        start = time.perf_counter()
        # a run prints its test tasks' table; with --choose it goes to the run folder's results.md only
        with contextlib.redirect_stdout(io.StringIO()) if args.choose else contextlib.nullcontext():
            results = read_results(done) if done.is_file() else run(cfg)
        history = pd.read_parquet(cfg.run_dir / "train_history.parquet")
        members = history.assign(seed=history.get("seed", 0)).groupby("seed")  # one model, or an ensemble's members
        val = json.loads((cfg.run_dir / "validation.json").read_text())["val_score"]
        walls.append({"run": name, "wall_s": time.perf_counter() - start, "train_s": members["wall_s"].max().sum(),
                      "best_step": members.apply(lambda h: h.loc[h.val_score.idxmax(), "step"]).median(),
                      "dataset": dataset, "split": split, "variant": variant, "steps": cfg.train.steps, "val_score": val})
        gpo = results.family == "gpo"
        renamed = f"gpo-{variant}" + results.shrunk.eq(True).map({True: SHRUNK, False: ""})
        frames.append(results.assign(dataset=dataset, model=model, method=results.method.where(~gpo, renamed)))
    results = pd.concat(frames)
    # baselines do not depend on the variant: keep one copy per (run setting)
    results = results.drop_duplicates(["dataset", "model", "train_fraction", "seed", "k", "method", "task", "role"])
    if args.choose:  # the validation tasks reported as the tested ones: what defaults are chosen on
        val = results[results.role == "val"]
        results = pd.concat([val.assign(role="test"), val])
    text = ("VALIDATION TASKS ONLY (--choose): every score below is a validation task's\n" if args.choose else "") + report(results)
    budget = pd.DataFrame(walls)
    validation = budget.pivot_table(index=["dataset", "variant"], columns="split", values="val_score")
    text += "\n\nvalidation score of the tested model (k = train.val_k), mean over seeds: what defaults are chosen on\n"
    text += validation.round(4).to_string()
    steps = "/".join(map(str, sorted(budget.steps.unique())))
    text += f"\n\ntraining: {steps} steps per run; per run median train time {budget.train_s.median():.0f}s, " \
            f"best validation step median {budget.best_step.median():.0f}; total wall {budget.wall_s.sum():.0f}s"
    save_bench_report(text, results, Path(args.out), "all_results.parquet")


if __name__ == "__main__":
    main()
