"""The main job, stage by stage: data -> split -> embeddings -> meta-training -> few-shot evaluation.

Each stage can run alone (the CLI's subcommands) and each is resumable: the data is
re-read (seconds), embeddings come from the cache, training continues from its last
checkpoint, and evaluation is cheap and deterministic. A run folder holds the resolved
config, the split, checkpoints, the training history and the results.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from gpo import methods
from gpo.config import ExperimentConfig, save_config, to_dict
from gpo.data import load_table
from gpo.data.basis import Basis
from gpo.data.splits import GroupSplit, split_groups
from gpo.data.survey import SurveyData, resolve_groups, select
from gpo.embed.survey import embed_survey, pick_device
from gpo.errors import ConfigError
from gpo.evaluate import evaluate, summarise
from gpo.model import GPO
from gpo.tasks import Points, labels_of
from gpo.train import train

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """A run's inputs on its device: the survey, its split, the label-free points, every
    group's shares (for sampling and scoring only) and the training groups' basis."""

    data: SurveyData
    split: GroupSplit
    points: Points
    labels: torch.Tensor  # (G, P)
    basis: Basis

    def index(self, names: list[str]) -> list[int]:
        return [self.data.groups.index(n) for n in names]


def load_source(cfg: ExperimentConfig) -> tuple[pd.DataFrame, np.ndarray | None]:
    """The canonical table, and the synthetic world's own features when the source is synthetic."""
    if cfg.data.source == "synthetic":
        return cfg.data.synthetic.build()
    return load_table(cfg.data.resolved_source(), cfg.data.on_bad_rows), None


def load_survey(cfg: ExperimentConfig, table: pd.DataFrame | None = None):
    """(survey arrays, evaluation groups, synthetic features or None)."""
    features = None
    if table is None:
        table, features = load_source(cfg)
    d = cfg.data
    data = select(table, d.groups, d.require_all_groups, d.require_ordinal, d.min_groups, d.extra_train_groups)
    return data, resolve_groups(table, d.groups), features


def load_inputs(cfg: ExperimentConfig) -> tuple[SurveyData, GroupSplit, np.ndarray]:
    """The survey, its group split and the (cached) embeddings: what every run of a study shares."""
    data, eval_groups, features = load_survey(cfg)
    extra = [g for g in data.groups if g not in eval_groups]
    split = split_groups(eval_groups, cfg.data.train_fraction, cfg.data.val_fraction, cfg.data.split_seed, extra)
    check_context_sizes(data, split, cfg)
    if cfg.embed.model == "synthetic":
        if features is None:
            raise ConfigError("embed.model 'synthetic' needs data.source 'synthetic'")
        return data, split, features
    return data, split, embed_survey(data, cfg.embed)


def check_context_sizes(data: SurveyData, split: GroupSplit, cfg: ExperimentConfig) -> None:
    """Every k must leave some group something to predict (a group with at most k questions
    is left out at that k, with a warning; if every group would be, k is a config error)."""
    answered = dict(zip(data.groups, data.available.sum(1).tolist()))
    checks = (("eval.ks", cfg.eval.ks, "test", split.test), ("train.val_k", [cfg.train.val_k], "validation", split.val))
    for key, ks, role, groups in checks:
        most = max(answered[g] for g in groups)
        too_large = [k for k in ks if k >= most]
        if too_large:
            raise ConfigError(f"{key}: {too_large[0] if len(ks) == 1 else too_large} context questions leave no {role} group "
                              f"anything to predict (the most questions a {role} group answered is {most})")


def assemble(data: SurveyData, split: GroupSplit, x: np.ndarray, device: str) -> Prepared:
    points = Points.build(data, x, device)
    labels = labels_of(data, device)
    basis = Basis.build(labels, [data.groups.index(g) for g in split.train], points.uniform())
    log.info("%s: %d questions, %d points, %d groups (train %d, val %d, test %d), x dim %d",
             data.dataset, len(data.qids), data.n_points, len(data.groups), len(split.train),
             len(split.val), len(split.test), x.shape[1])
    return Prepared(data, split, points, labels, basis)


def prepare(cfg: ExperimentConfig) -> Prepared:
    return assemble(*load_inputs(cfg), pick_device(cfg.train.device))


def member_dirs(run_dir: Path, ensemble: int) -> list[Path]:
    """Checkpoint folders of a run's `ensemble` models (seeds train.seed, train.seed + 1, ...).
    The first is a single model's own folder, so raising train.ensemble on a finished run
    trains only the new members."""
    root = run_dir / "checkpoints"
    return [root] + [root / f"member{i}" for i in range(1, ensemble)]


def run_training(prep: Prepared, cfg: ExperimentConfig, on_validate=None) -> list[Path]:
    """Meta-train every member of the ensemble (resuming each from its last checkpoint) and
    return their best checkpoints' paths."""
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    (run_dir / "split.json").write_text(json.dumps(prep.split.as_dict(), indent=1))
    prior, params = None, {}
    if cfg.model.prior != "none":
        params = methods.choose(prep, cfg, cfg.model.prior)
        prior = methods.baseline_method(cfg.model.prior, **params)
    train_labels = torch.full_like(prep.labels, torch.nan)  # training reads the training groups' shares only
    train_rows = prep.index(prep.split.train)
    train_labels[train_rows] = prep.labels[train_rows]
    histories = []
    for member, ckpt_dir in enumerate(member_dirs(run_dir, cfg.train.ensemble)):
        seed = cfg.train.seed + member
        torch.manual_seed(seed)  # the model's initialisation
        model = GPO(cfg.model, prep.points.x.shape[1], prep.basis.size).to(prep.points.device)
        log.info("GPO: %d parameters", model.n_params())
        desc = f"meta-train {member + 1}/{cfg.train.ensemble}" if cfg.train.ensemble > 1 else "meta-train"
        state = train(model, prep.points, train_labels, prep.basis, train_rows,
                      lambda m: methods.validation_score(prep, cfg, methods.gpo_method(m, prior)), replace(cfg.train, seed=seed),
                      ckpt_dir, to_dict(cfg), prior, params, on_validate, desc)
        log.info("best validation alignment %.4f at step %d", state.best_score, state.best_step)
        histories.append(pd.DataFrame(state.history).assign(seed=seed))
    pd.concat(histories).to_parquet(run_dir / "train_history.parquet")
    checkpoints = [d / "best.pt" for d in member_dirs(run_dir, cfg.train.ensemble)]
    # the score of what will be tested, what studies choose on: one model's best checkpoint
    # was scored in training; an ensemble scores more than its best member, so it is scored here
    if len(checkpoints) == 1:
        name, score = methods.gpo_name(cfg.model), state.best_score
    else:
        name, method, _ = methods.load_gpo(checkpoints, prep.points.device)
        score = methods.validation_score(prep, cfg, method)
    (run_dir / "validation.json").write_text(json.dumps({"method": name, "val_alignment": score}) + "\n")
    log.info("%s: validation alignment %.4f", name, score)
    return checkpoints


def evaluate_roles(prep: Prepared, cfg: ExperimentConfig, built: dict) -> pd.DataFrame:
    """Every method on the validation groups (role "val": what choices may read) and on the
    test groups (role "test": what is reported), at every k of eval.ks, on the same episodes."""
    frames = []
    for role, groups in (("val", prep.split.val), ("test", prep.split.test)):
        frames.append(evaluate(built, prep.points, prep.labels, prep.basis, prep.index(groups), prep.data.groups,
                               cfg.eval.ks, cfg.eval.draws, cfg.eval.seed, max_targets=cfg.eval.max_targets,
                               desc=f"evaluate {role} groups").assign(role=role))
    return pd.concat(frames, ignore_index=True).assign(
        run=cfg.name, dataset=prep.data.dataset, train_fraction=cfg.data.train_fraction, split_seed=cfg.data.split_seed,
        seed=cfg.train.seed)


def run_evaluation(prep: Prepared, cfg: ExperimentConfig, checkpoints: list[Path]) -> pd.DataFrame:
    """GPO (averaging the members' predictions, when `checkpoints` holds several) and the
    baselines on the validation and test groups at every k of eval.ks."""
    built, training = methods.build(prep, cfg, checkpoints)
    results = evaluate_roles(prep, cfg, built)
    for column, value in training.items():  # GPO's rows only: baselines train nothing
        results[column] = results["method"].str.startswith("gpo").map({True: value, False: None})
    return results.assign(embed_model=cfg.embed.model, embed_layers=cfg.embed.layers)


def write_results(results: pd.DataFrame, run_dir: Path) -> str:
    """Save results.parquet (every role) and results.md (test groups); return the printed table."""
    tmp = run_dir / "results.parquet.tmp"
    results.to_parquet(tmp)
    tmp.replace(run_dir / "results.parquet")
    table = format_table(summarise(results[results.role == "test"]))
    (run_dir / "results.md").write_text(table + "\n")
    return table


def format_table(summary: pd.DataFrame) -> str:
    """Methods x k, each cell 'mean (worst group)'."""
    cell = summary.assign(cell=summary["mean"].map("{:.4f}".format) + " (" + summary["worst"].map("{:.4f}".format) + ")")
    wide = cell.pivot(index="method", columns="k", values="cell")
    wide.columns = [f"k={k}" for k in wide.columns]
    order = summary.groupby("method")["mean"].last().sort_values(ascending=False).index
    return "alignment on held-out groups: mean (worst group)\n" + wide.loc[order].to_string()


def run(cfg: ExperimentConfig) -> pd.DataFrame:
    prep = prepare(cfg)
    results = run_evaluation(prep, cfg, run_training(prep, cfg))
    print(write_results(results, cfg.run_dir))
    return results
