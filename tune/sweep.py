"""Run a sweep study: Optuna (through Ray Tune) searches GPO settings on validation groups,
then the best configuration per base model and k is retrained over seeds and tested once.

    python tune/sweep.py tune/studies/opinionqa.yaml [--resume] [--smoke-test]
    gpo sweep tune/studies/opinionqa.yaml [--resume]
    ray submit cluster/cluster.yaml tune/sweep.py -- tune/studies/opinionqa.yaml

On a machine with a running Ray cluster (RAY_ADDRESS set, or `ray submit`) it joins it;
otherwise it starts a local Ray. Embeddings are loaded (or computed) once per base model and
handed to the trials through the object store. An interrupted sweep continues with --resume:
finished trials are kept, unfinished ones continue from their last checkpoint.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

from gpo.config import to_dict
from gpo.errors import GPOError
from gpo.pipeline import assemble, load_inputs, run_evaluation, run_training, write_results
from gpo.tune.study import BaseModel, StudyConfig, load_study, search_space

log = logging.getLogger("gpo.sweep")


class Interrupted(GPOError):
    """Ctrl-C reached Tune: it saved the search; nothing after it may run on a partial search."""


def trial(params: dict, study: StudyConfig, base_model: BaseModel, k: int, inputs) -> None:
    """One Tune trial: train with the sampled params, report every validation with a checkpoint."""
    import torch
    from ray import tune

    cfg = study.experiment(base_model, k, params)
    cfg.out_dir, cfg.name = tune.get_context().get_trial_dir(), "run"
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a restored trial, possibly on another node: continue from it
        with checkpoint.as_directory() as folder:
            target = cfg.run_dir / "checkpoints"
            target.mkdir(parents=True, exist_ok=True)
            for f in Path(folder).glob("*.pt"):
                shutil.copy(f, target / f.name)
    torch.set_num_threads(max(1, int(study.resources.cpu)))
    prep = assemble(*inputs, "cuda" if torch.cuda.is_available() else "cpu")

    def report(state, ckpt_dir: Path) -> None:
        last = state.history[-1]
        tune.report({"val_alignment": last["val_alignment"], "best_val_alignment": state.best_score,
                     "step": state.step, "loss": last["loss"]},
                    checkpoint=tune.Checkpoint.from_directory(str(ckpt_dir)))

    run_training(prep, cfg, on_validate=report)


def search(study: StudyConfig, base_model: BaseModel, k: int, inputs, resume: bool, stop=None):
    """One Optuna (or random) search with ASHA; `stop` is an optional Tune stopper (budgets)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    name = f"{base_model.tag}-k{k}"
    path = study.root / "search" / name
    trainable = tune.with_resources(
        tune.with_parameters(trial, study=study, base_model=base_model, k=k, inputs=inputs),
        {"cpu": study.resources.cpu, "gpu": study.resources.gpu})
    if tune.Tuner.can_restore(str(path)):
        if not resume:
            raise GPOError(f"{path}: this search has run before; continue it with --resume, or rename the study")
        log.info("resuming search %s", path)
        grid = tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True, resume_errored=True).fit()
        return finished(grid, path, None if stop else study.budget.num_samples)
    b = study.budget
    cfg = study.experiment(base_model, k)
    if b.searcher == "optuna":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        searcher = ConcurrencyLimiter(OptunaSearch(sampler=optuna.samplers.TPESampler(seed=b.seed, multivariate=True)),
                                      max_concurrent=b.max_concurrent)
    elif b.searcher == "random":
        searcher = BasicVariantGenerator(random_state=b.seed, max_concurrent=b.max_concurrent)
    else:
        raise GPOError(f"budget.searcher must be 'optuna' or 'random', not {b.searcher!r}")
    max_steps = max(study.space.get("train.steps", {}).get("choice", [cfg.train.steps]) + [cfg.train.steps])
    scheduler = ASHAScheduler(time_attr="training_iteration", max_t=max_steps // cfg.train.eval_every + 1,
                              grace_period=b.grace_period, reduction_factor=b.reduction_factor)
    tuner = tune.Tuner(
        trainable, param_space=search_space(study),
        tune_config=tune.TuneConfig(metric=study.metric, mode="max", search_alg=searcher, scheduler=scheduler,
                                    num_samples=b.num_samples),
        run_config=tune.RunConfig(name=name, storage_path=str(study.root / "search"), verbose=1, stop=stop,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    )
    return finished(tuner.fit(), path, None if stop else b.num_samples)


def finished(grid, path: Path, expected: int | None):
    """The search's results. Tune returns normally when interrupted (and its cleanup marks
    stopped trials terminated in memory), so check the state it saved: every trial started
    (`expected`, unless a stopper ends the search) and ended."""
    from ray.tune import ExperimentAnalysis

    saved = ExperimentAnalysis(str(path.resolve())).trials
    ended = all(t.status in ("TERMINATED", "ERROR") for t in saved)
    if not ended or (expected is not None and len(saved) < expected):
        raise Interrupted(f"interrupted; the search is saved in {path}: continue with --resume")
    return grid


def trial_rows(grid, study: StudyConfig, base_model: BaseModel, base_params: int, k: int) -> pd.DataFrame:
    rows = []
    max_t = max((r.metrics or {}).get("training_iteration", 0) for r in grid)
    for r in grid:
        metrics, history = r.metrics or {}, r.metrics_dataframe
        rows.append({
            "kind": "trial", "study": study.name, "base_model": base_model.model, "base_layers": base_model.layers,
            "base_params": base_params, "k": k, "trial_id": metrics.get("trial_id"),
            "status": "error" if r.error else ("stopped early" if metrics.get("training_iteration", 0) < max_t else "completed"),
            "val_alignment": metrics.get(study.metric), "steps": metrics.get("step"), "wall_s": metrics.get("time_total_s"),
            "history": (json.dumps(history[["step", "val_alignment"]].to_dict("list"))
                        if history is not None and "step" in history else "{}"),
            "config": json.dumps(to_dict(study.experiment(base_model, k, {key: r.config.get(key) for key in study.space}))),
            **{f"param/{key}": r.config.get(key) for key in study.space},
        })
    return pd.DataFrame(rows)


def final_run(study: StudyConfig, base_model: BaseModel, k: int, params: dict, seed: int, inputs) -> pd.DataFrame:
    """Retrain the chosen config with one seed and test it once (reuses a finished run)."""
    import torch

    tag = f"{base_model.tag}-k{k}-seed{seed}"
    cfg = study.experiment(base_model, k, params, extra=[f"train.seed={seed}", f"out_dir={study.root / 'final'}",
                                                         f"name={tag}", f"eval.ks=[{k}]"])
    done = cfg.run_dir / "results.parquet"
    if done.is_file():
        return pd.read_parquet(done)
    torch.set_num_threads(max(1, int(study.resources.cpu)))
    prep = assemble(*inputs, "cuda" if torch.cuda.is_available() else "cpu")
    results = run_evaluation(prep, cfg, run_training(prep, cfg))
    write_results(results, cfg.run_dir)
    return results


def run_study(study: StudyConfig, resume: bool = False) -> pd.DataFrame:
    import ray

    from gpo.embed.distributed import init_ray
    from gpo.embed.models import count_parameters

    init_ray(os.environ.get("RAY_ADDRESS", ""))
    start = time.perf_counter()
    frames, summaries = [], []
    for base_model in study.base_models:
        inputs = load_inputs(study.experiment(base_model, study.val_ks[0]))  # once per study and base model
        shared = ray.put(inputs)
        base_params = count_parameters(base_model.model, base_model.layers)
        for k in study.val_ks:
            grid = search(study, base_model, k, inputs, resume)
            trials = trial_rows(grid, study, base_model, base_params, k)
            frames.append(trials)
            if trials.val_alignment.isna().all():
                raise GPOError(f"search {base_model.tag}-k{k}: no trial reported a score; see the trials' error files above")
            best = grid.get_best_result(metric=study.metric, mode="max", scope="all")
            params = {key: best.config[key] for key in study.space}
            run = ray.remote(num_cpus=study.resources.cpu, num_gpus=study.resources.gpu)(final_run)
            tests = ray.get([run.remote(study, base_model, k, params, seed, shared) for seed in study.seeds])
            for seed, results in zip(study.seeds, tests):
                frames.append(results.assign(kind="test", study=study.name, base_model=base_model.model,
                                             base_layers=base_model.layers, base_params=base_params,
                                             config=json.dumps(params)))
            gpo = pd.concat(tests).query("role == 'test' and method.str.startswith('gpo')").groupby("seed")["alignment"].mean()
            summaries.append(
                f"{base_model.tag} k={k}: best {params} val {best.metrics[study.metric]:.4f}; "
                f"trials {int((trials.status == 'completed').sum())} completed, {int((trials.status == 'stopped early').sum())} "
                f"stopped early, {int((trials.status == 'error').sum())} failed; "
                f"test (mean over {len(gpo)} seeds) {gpo.mean():.4f}")
    table = pd.concat(frames, ignore_index=True)
    out = study.root / "study.parquet"
    table.to_parquet(out.with_suffix(".tmp"))
    out.with_suffix(".tmp").replace(out)
    for line in summaries:
        print(line)
    print(f"study {study.name}: {len(table[table.kind == 'trial'])} trials, wall {time.perf_counter() - start:.0f}s -> {out}")
    return table


def smoke(study: StudyConfig) -> StudyConfig:
    """The same study, shrunk to seconds (CI runs this size of the real script)."""
    study.overrides = [*study.overrides, "train.steps=4", "train.eval_every=2", "eval.draws=1"]
    study.budget.num_samples, study.budget.grace_period = 2, 1
    study.seeds = study.seeds[:1]
    study.name = f"{study.name}-smoke"
    return study


def main(argv=None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", help="study YAML (tune/studies/*.yaml)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted sweep")
    parser.add_argument("--smoke-test", action="store_true", help="shrink the study to seconds")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override study keys")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        study = load_study(args.study, args.set)
        run_study(smoke(study) if args.smoke_test else study, resume=args.resume)
    except Interrupted as e:
        print(f"gpo sweep: {e}", file=sys.stderr)
        return 130
    except GPOError as e:
        print(f"gpo sweep: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
