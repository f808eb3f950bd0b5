"""The main job, stage by stage: inputs (data, split, embeddings) -> meta-training -> few-shot evaluation.

Each stage can run alone (the CLI's subcommands) and each is resumable: the data is
re-read (seconds), embeddings come from the cache, training continues from its last
checkpoint, and evaluation is cheap and deterministic. A run folder holds the resolved
config, the split, checkpoints, the training history and the results.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from gpo import methods
from gpo.config import ExperimentConfig, merge, read_yaml, save_config, to_dict
from gpo.data.splits import REFERENCE_VALIDATION
from gpo.errors import ConfigError
from gpo.evaluate import evaluate, mean_and_worst
from gpo.inputs import Prepared, prepare
from gpo.lock import exclusive
from gpo.model import GPO
from gpo.results import with_schema
from gpo.selection import PerK, baseline, choose, stored, validation_score
from gpo.shards import ShardStore, sharded
from gpo.train import train

log = logging.getLogger(__name__)


# The settings a run folder's checkpoints and data depend on (validation episodes choose best.pt);
# the rest (evaluation, devices, more ensemble members) may change between invocations.
IDENTITY = ("data.", "embed.model", "embed.layers", "embed.template", "embed.max_tokens", "embed.dtype", "embed.pooling",
            "model.", "train.", "eval.draws", "eval.seed")
NOT_IDENTITY = ("train.ensemble", "train.device")
EVALUATION = "evaluation"  # a run folder's shards of an evaluation under way


def flat(tree: dict, prefix: str = "") -> dict:
    return {k: v for key, value in tree.items()
            for k, v in (flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value}).items()}


def saved_settings(run_dir: Path) -> dict:
    """A run folder's resolved config.yaml as written ({} when there is none), or one error line
    naming a damaged record: not YAML, or sections of a resolved config missing (cut off)."""
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        return {}
    fix = "restore it, or start a new run with --set name=NEW"
    try:
        tree = read_yaml(saved, "run record")
    except ConfigError as e:
        raise ConfigError(f"{e}: the run record is damaged; {fix}") from None
    missing = [section for section in to_dict(ExperimentConfig()) if section not in tree]
    if missing:
        raise ConfigError(f"{saved}: the run record is damaged (cut off, or of another version): no {', '.join(missing)}; {fix}")
    return tree


def changed_settings(cfg: ExperimentConfig) -> dict[str, tuple]:
    """{key: (saved, now)} of the identity settings where `cfg` differs from its run folder's config.yaml."""
    saved = saved_settings(cfg.run_dir)
    if not saved:
        return {}
    old = flat(merge(to_dict(ExperimentConfig()), saved))
    return {key: (old.get(key), value) for key, value in flat(to_dict(cfg)).items()
            if key.startswith(IDENTITY) and key not in NOT_IDENTITY and old.get(key) != value}


@contextlib.contextmanager
def claim(cfg: ExperimentConfig):
    """The run folder for this process alone, and only for the run it holds: settings that would
    change its checkpoints or data are refused before anything is written."""
    with exclusive(cfg.run_dir, "this run folder"):
        changed = changed_settings(cfg)
        if changed:
            shown = ", ".join(f"{key} ({old!r} there, {new!r} now)" for key, (old, new) in list(changed.items())[:3])
            raise ConfigError(f"{cfg.run_dir}: a run made with other settings: {shown}{' ...' if len(changed) > 3 else ''}; "
                              "start a new run with --set name=NEW (or evaluate this one with `gpo eval`)")
        yield


def member_dirs(run_dir: Path, ensemble: int) -> list[Path]:
    """Checkpoint folders of a run's `ensemble` models (seeds train.seed, train.seed + 1, ...).
    The first is a single model's own folder, so raising train.ensemble on a finished run
    trains only the new members."""
    root = run_dir / "checkpoints"
    return [root] + [root / f"member{i}" for i in range(1, ensemble)]


def run_training(prep: Prepared, cfg: ExperimentConfig, on_validate=None) -> list[Path]:
    """Meta-train every member of the ensemble (resuming each from its last checkpoint) and
    return their best checkpoints' paths."""
    with claim(cfg):
        return _train(prep, cfg, on_validate)


def _train(prep: Prepared, cfg: ExperimentConfig, on_validate) -> list[Path]:
    run_dir = cfg.run_dir
    save_config(cfg, run_dir / "config.yaml")
    (run_dir / "split.json").write_text(json.dumps(prep.split.as_dict(), indent=1))
    prior, choices = None, PerK({})
    if cfg.model.prior != "none":  # chosen per k like the baseline itself; training contexts take the nearest k
        choices = choose(prep, cfg, cfg.model.prior)
        prior = baseline(cfg.model.prior, choices)
    params = methods.feature_params(prep, cfg)
    features = methods.gpo_features(prep, cfg.model, params)
    fitted = {"prior_choices": stored(choices), "feature_params": params}
    train_labels = torch.full_like(prep.labels, torch.nan)  # training reads the training groups' shares only
    train_rows = prep.index(prep.split.train)
    train_labels[train_rows] = prep.labels[train_rows]
    histories = []
    for member, ckpt_dir in enumerate(member_dirs(run_dir, cfg.train.ensemble)):
        seed = cfg.train.seed + member
        torch.manual_seed(seed)  # the model's initialisation
        model = GPO(cfg.model, features.width).to(prep.points.device)
        log.info("GPO: %d parameters", model.n_params())
        desc = f"meta-train {member + 1}/{cfg.train.ensemble}" if cfg.train.ensemble > 1 else "meta-train"
        state = train(model, prep.points, train_labels, prep.basis, features, train_rows,
                      lambda m: validation_score(prep, cfg, methods.gpo_method(m, features, prior)), replace(cfg.train, seed=seed),
                      ckpt_dir, to_dict(cfg), prior, fitted, on_validate, desc)
        log.info("best validation %s %.4f at step %d", prep.metric, state.best_score, state.best_step)
        histories.append(pd.DataFrame(state.history).assign(seed=seed))
    pd.concat(histories).to_parquet(run_dir / "train_history.parquet")
    checkpoints = [d / "best.pt" for d in member_dirs(run_dir, cfg.train.ensemble)]
    # the score of what will be tested, what studies choose on: one model's best checkpoint
    # was scored in training; an ensemble scores more than its best member, so it is scored here
    if len(checkpoints) == 1:
        name, score = methods.gpo_name(cfg.model), state.best_score
    else:
        name, method, _, _ = methods.load_gpo(checkpoints, prep)
        score = validation_score(prep, cfg, method)
    (run_dir / "validation.json").write_text(json.dumps({"method": name, "metric": prep.metric, "val_score": score}) + "\n")
    log.info("%s: validation %s %.4f", name, prep.metric, score)
    return checkpoints


def evaluate_roles(prep: Prepared, cfg: ExperimentConfig, built: dict, unavailable: dict | None = None,
                   checkpoints: list[Path] = ()) -> pd.DataFrame:
    """Every method on the validation groups (role "val": what choices may read) and on the
    test groups (role "test": what is reported), at every k of eval.ks, on the same episodes;
    a method that cannot run gets a test row per k with its reason in `note`. Tasks are scored
    in shards (eval.shard_tasks; over Ray by eval.backend), each kept in the run folder's
    `evaluation/` as it finishes, so a stopped evaluation resumes where it was."""
    frames, stores = [], []
    settings = to_dict(cfg)
    settings["eval"] = {k: v for k, v in settings["eval"].items() if k not in ("backend", "ray_address")}  # where, not what
    for role, groups in (("val", prep.split.val), ("test", prep.split.test)):
        stores.append(ShardStore.keyed(cfg.run_dir / EVALUATION, role, {
            "config": settings, "methods": list(built), "groups": groups,
            "checkpoints": [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in checkpoints]}))
        runner = sharded(cfg.eval.shard_tasks, stores[-1], cfg.eval.backend, cfg.eval.ray_address)
        frames.append(evaluate(built, prep.points, prep.labels, prep.basis, prep.index(groups), prep.data.tasks,
                               cfg.eval.ks, cfg.eval.draws, cfg.eval.seed, prep.chunk, cfg.eval.max_targets,
                               f"evaluate {role} {prep.unit}s", prep.metrics, cfg.eval.contexts == "shared",
                               runner).assign(role=role))
    for store in stores:  # every shard is in the frames now
        shutil.rmtree(store.folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        (cfg.run_dir / EVALUATION).rmdir()  # unless another evaluation's shards wait there
    frames.append(pd.DataFrame([{"method": name, "k": k, "role": "test", "note": f"cannot run: {reason}"}
                                for name, reason in (unavailable or {}).items() for k in cfg.eval.ks]))
    results = pd.concat(frames, ignore_index=True).assign(
        run=cfg.name, dataset=prep.data.dataset, unit=prep.unit, train_fraction=cfg.data.train_fraction,
        split_seed=cfg.data.split_seed, seed=cfg.train.seed, protocol=cfg.protocol, validation=cfg.data.validation,
        aggregate=cfg.eval.aggregate)
    if prep.data.weights is not None:  # a respondent's survey weight, for weighted means
        results["weight"] = results["task"].map(dict(zip(prep.data.tasks, prep.data.weights)))
    return results


def run_evaluation(prep: Prepared, cfg: ExperimentConfig, checkpoints: list[Path]) -> pd.DataFrame:
    """GPO (averaging the members' predictions, when `checkpoints` holds several) and the
    baselines on the validation and test groups at every k of eval.ks."""
    built, training, unavailable = methods.build(prep, cfg, checkpoints)
    results = evaluate_roles(prep, cfg, built, unavailable, checkpoints)
    for column, value in training.items():  # GPO's rows only: baselines train nothing
        results[column] = (results["family"] == "gpo").map({True: value, False: None})
    return results.assign(embed_model=cfg.embed.model, embed_layers=cfg.embed.layers)


def write_results(results: pd.DataFrame, run_dir: Path) -> str:
    """Save results.parquet (every role) and results.md (test groups); return the printed table."""
    tmp = run_dir / "results.parquet.tmp"
    with_schema(results).to_parquet(tmp)
    tmp.replace(run_dir / "results.parquet")
    test = results[results.role == "test"]
    table = format_table(test)
    if "note" in test:
        table += "".join(f"\n{method}: {note}" for method, note in test.dropna(subset=["note"]).drop_duplicates("method")[
            ["method", "note"]].itertuples(index=False))
    (run_dir / "results.md").write_text(table + "\n")
    return table


def format_table(test: pd.DataFrame) -> str:
    """Methods x k of the test rows' score: each cell 'mean (worst group)', or for respondents
    'mean (worst decile) weighted mean', then their log loss the same way; 'n/a' for a method
    that could not run."""
    metric = test["metric"].dropna().iloc[0] if test["metric"].notna().any() else "alignment"
    if "weight" not in test:
        pairs = "aggregate" in test and (test["aggregate"] == "pairs").any()
        head = f"{metric} on held-out groups: {'mean over (group, question) pairs' if pairs else 'mean'} (worst group)"
        if "protocol" in test and (test["protocol"] != "project").any():
            head = f"protocol: {test['protocol'].iloc[0]}\n{head}"
        if "validation" in test and (test["validation"] == REFERENCE_VALIDATION).any():
            head = ("SELECTED ON THE TEST GROUPS (data.validation: the reference code's bug): every choice read these "
                    f"groups, so the numbers below are optimistic\n{head}")
        return head + "\n" + pivot(mean_and_worst(test, aggregate="pairs" if pairs else "tasks"), "{mean:.4f} ({worst:.4f})")
    cell = "{mean:.4f} ({worst:.4f}) {weighted:.4f}"
    loss = mean_and_worst(test.assign(score=-test["log_loss"]))[["mean", "worst", "weighted"]].mul(-1)
    return (f"{metric} on held-out respondents: mean (mean of the worst decile) survey-weighted mean\n"
            + pivot(mean_and_worst(test), cell) + "\n\nlog loss of the answer (lower is better): mean (worst decile) weighted\n"
            + pivot(mean_and_worst(test).assign(**loss), cell, ascending=True))


def pivot(summary: pd.DataFrame, cell: str, ascending: bool = False) -> str:
    """Methods (best at the largest k first) x k, each cell formatted from its summary row."""
    text = summary.apply(lambda r: cell.format(**r) if pd.notna(r["mean"]) else "n/a", axis=1)
    wide = summary.assign(cell=text).pivot(index="method", columns="k", values="cell")
    wide.columns = [f"k={k}" for k in wide.columns]
    order = summary.groupby("method")["mean"].last().sort_values(ascending=ascending).index
    return wide.loc[order].to_string()


def run(cfg: ExperimentConfig) -> pd.DataFrame:
    with claim(cfg):
        prep = prepare(cfg)
        results = run_evaluation(prep, cfg, run_training(prep, cfg))
        print(write_results(results, cfg.run_dir))
    return results
