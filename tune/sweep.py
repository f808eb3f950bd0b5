"""Run a sweep study: Optuna (through Ray Tune) searches GPO settings on validation groups,
then the best configuration per base model and k is retrained over seeds and tested once.

    python tune/sweep.py tune/studies/opinionqa.yaml [--resume] [--smoke-test]
    gpo sweep tune/studies/opinionqa.yaml [--resume]
    ray submit cluster/local.yaml tune/sweep.py -- tune/studies/opinionqa.yaml
    ray job submit --working-dir . -- gpo sweep tune/studies/opinionqa.yaml

On a machine with a running Ray cluster (RAY_ADDRESS set, `ray submit`, `ray job submit`) it
joins it (as Ray does, a `ray start` cluster on this machine counts: RAY_ADDRESS=local keeps
the sweep on a private Ray); otherwise it starts a local Ray. The driver loads the survey and its embeddings once
per base model and hands them to trials and final runs through the object store, so worker
nodes need no data. Everything a run writes goes to the study's storage (tune/storage.py):
a trial or final run whose node dies is retried on another node from its last checkpoint
there. An interrupted sweep (Ctrl-C, a killed driver) continues with --resume: finished
trials and final runs are kept, unfinished ones continue from their last checkpoint.
Ray, torch and the pipeline are imported where they are used, so that a bad study is refused
before they load.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

from gpo.config import to_dict
from gpo.errors import GPOError, Interrupted, run_command
from gpo.results import current
from gpo.tune.study import BaseModel, StudyConfig, load_study, search_space

log = logging.getLogger("gpo.sweep")


def device() -> str:
    """The GPU Ray gave this task (the study's `resources.gpu`), else the CPU."""
    import ray

    return "cuda" if ray.get_gpu_ids() else "cpu"


def quiet_worker(threads: float) -> None:
    """A trial's output is Tune's status table: no per-trial progress bars or checkpoint notices."""
    import torch

    os.environ["TQDM_DISABLE"] = "1"
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    torch.set_num_threads(max(1, int(threads)))


def trial(params: dict, study: StudyConfig, base_model: BaseModel, k: int, inputs) -> None:
    """One Tune trial: train with the sampled params, report every validation with a checkpoint."""
    from ray import tune

    from gpo.inputs import assemble
    from gpo.pipeline import run_training

    quiet_worker(study.resources.cpu)
    cfg = study.experiment(base_model, k, params)
    cfg.out_dir, cfg.name = tune.get_context().get_trial_dir(), "run"
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a restored trial, possibly on another node: continue from it
        with checkpoint.as_directory() as folder:
            target = cfg.run_dir / "checkpoints"
            target.mkdir(parents=True, exist_ok=True)
            for f in Path(folder).glob("*.pt"):
                shutil.copy(f, target / f.name)
    prep = assemble(*inputs, device())

    def report(state, ckpt_dir: Path) -> None:
        last = state.history[-1]
        tune.report({"val_score": last["val_score"], "best_val_score": state.best_score,
                     "step": state.step, "loss": last["loss"]},
                    checkpoint=tune.Checkpoint.from_directory(str(ckpt_dir)))

    run_training(prep, cfg, on_validate=report)


@contextlib.contextmanager
def graceful_interrupt():
    """Ctrl-C during a search stops Tune gracefully (it saves the search) and is remembered, so
    the sweep stops after it however far the search had got; a second Ctrl-C stops at once.
    Tune's own SIGINT handler stays installed after a search and would swallow a later Ctrl-C,
    so it is off and Tune's other graceful stop, SIGUSR1, is sent instead (once Tune listens
    for it; before that, Ctrl-C stops at once, as there is nothing to save yet)."""
    state = {"interrupted": False}
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield state
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGUSR1)}

    def handler(sig, frame):
        if state["interrupted"] or signal.getsignal(signal.SIGUSR1) is previous[signal.SIGUSR1]:
            raise KeyboardInterrupt
        state["interrupted"] = True
        log.warning("interrupted: stopping the search once its state is saved (Ctrl-C again to stop now)")
        os.kill(os.getpid(), signal.SIGUSR1)

    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    signal.signal(signal.SIGINT, handler)
    try:
        yield state
    finally:
        for sig, before in previous.items():
            signal.signal(sig, before)


def search(study: StudyConfig, base_model: BaseModel, k: int, inputs, resume: bool, stop=None):
    """One Optuna (or random) search with ASHA; `stop` is an optional Tune stopper (budgets)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    name = f"{base_model.tag}-k{k}"
    fs, root = study.root.child("search").filesystem()
    trainable = tune.with_resources(
        tune.with_parameters(trial, study=study, base_model=base_model, k=k, inputs=inputs),
        {"cpu": study.resources.cpu, "gpu": study.resources.gpu})
    # one kept checkpoint per trial makes Tune snapshot the search at every report, by design
    os.environ["TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S"] = "0"
    if tune.Tuner.can_restore(f"{root}/{name}", storage_filesystem=fs):
        if not resume:
            raise GPOError(f"{study.root}/search/{name}: this search has run before; continue it with --resume, "
                           "or rename the study")
        log.info("resuming search %s/search/%s", study.root, name)
        tuner = tune.Tuner.restore(f"{root}/{name}", trainable=trainable, resume_unfinished=True, resume_errored=True,
                                   storage_filesystem=fs)
    else:
        b = study.budget
        cfg = study.experiment(base_model, k)
        if b.searcher == "optuna":
            import optuna
            from ray.tune.search.optuna import OptunaSearch

            searcher = ConcurrencyLimiter(OptunaSearch(sampler=optuna.samplers.TPESampler(seed=b.seed, multivariate=True)),
                                          max_concurrent=b.max_concurrent)
        else:  # "random": the study checked the name when it was read
            searcher = BasicVariantGenerator(random_state=b.seed, max_concurrent=b.max_concurrent)
        max_steps = max(study.space.get("train.steps", {}).get("choice", [cfg.train.steps]) + [cfg.train.steps])
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=max_steps // cfg.train.eval_every + 1,
                                  grace_period=b.grace_period, reduction_factor=b.reduction_factor)
        tuner = tune.Tuner(
            trainable, param_space=search_space(study),
            tune_config=tune.TuneConfig(metric=study.metric, mode="max", search_alg=searcher, scheduler=scheduler,
                                        num_samples=b.num_samples, reuse_actors=True),
            run_config=tune.RunConfig(name=name, storage_path=root, storage_filesystem=fs, verbose=1, stop=stop,
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                                      failure_config=tune.FailureConfig(max_failures=b.max_failures)),
        )
    with graceful_interrupt() as state:
        grid = tuner.fit()
    if state["interrupted"]:
        raise Interrupted(f"interrupted; the search is saved in {study.root}/search/{name}: continue with --resume")
    return grid


def trial_rows(grid, study: StudyConfig, base_model: BaseModel, base_params: int, k: int) -> pd.DataFrame:
    rows = []
    for r in grid:
        metrics, history = r.metrics or {}, r.metrics_dataframe
        params = {key: r.config.get(key) for key in study.space}
        cfg = study.experiment(base_model, k, params)
        finished = metrics.get("step", -1) >= cfg.train.steps  # its own train.steps, which may be searched
        rows.append({
            "kind": "trial", "study": study.name, "base_model": base_model.model, "base_layers": base_model.layers,
            "base_params": base_params, "k": k, "trial_id": metrics.get("trial_id"),
            "status": "error" if r.error else ("completed" if finished else "stopped early"),
            "val_score": metrics.get(study.metric), "steps": metrics.get("step"), "wall_s": metrics.get("time_total_s"),
            "history": (json.dumps(history[["step", "val_score"]].to_dict("list"))
                        if history is not None and "step" in history else "{}"),
            "config": json.dumps(to_dict(cfg)),
            **{f"param/{key}": value for key, value in params.items()},
        })
    return pd.DataFrame(rows)


def final_run(study: StudyConfig, base_model: BaseModel, k: int, params: dict, seed: int, inputs) -> pd.DataFrame:
    """Retrain the chosen config with one seed and test it once, on whichever node Ray picks.
    The run lives in the study's storage (final/<tag>/): its checkpoints are uploaded at every
    validation, so a retry on another node continues from the last one, and results.parquet,
    uploaded last, marks it done (a finished run is read back, not rerun)."""
    from gpo.inputs import assemble
    from gpo.pipeline import run_evaluation, run_training, write_results

    tag = f"{base_model.tag}-k{k}-seed{seed}"
    stored = study.root.child("final", tag)
    if stored.child("results.parquet").exists():
        return current(stored.child("results.parquet").read_parquet(), stored.child("results.parquet"))
    local = Path(tempfile.mkdtemp(prefix=f"gpo-final-{tag}-"))
    try:
        cfg = study.experiment(base_model, k, params, extra=[f"train.seed={seed}", f"out_dir={local}", f"name={tag}",
                                                             f"eval.ks=[{k}]"])
        stored.get(cfg.run_dir)  # the checkpoints of an earlier attempt, if any
        quiet_worker(study.resources.cpu)
        prep = assemble(*inputs, device())
        checkpoints = run_training(prep, cfg, on_validate=lambda state, folder: stored.child("checkpoints").put(folder))
        results = run_evaluation(prep, cfg, checkpoints)
        write_results(results, cfg.run_dir)
        for f in sorted(cfg.run_dir.rglob("*")):
            if f.is_file() and f.name not in ("results.parquet", ".lock"):
                stored.child(*f.relative_to(cfg.run_dir).parts).put(f)
        stored.child("results.parquet").put(cfg.run_dir / "results.parquet")
        return results
    finally:
        shutil.rmtree(local, ignore_errors=True)


def run_study(study: StudyConfig, resume: bool = False) -> pd.DataFrame:
    import ray

    from gpo.embed.distributed import init_ray
    from gpo.embed.models import count_parameters
    from gpo.embed.replica import node_shapes
    from gpo.inputs import load_inputs
    from gpo.results import with_schema

    init_ray(os.environ.get("RAY_ADDRESS", ""))
    live, _, autoscaler = node_shapes(ray)  # an autoscaler may add nodes to a cluster of one
    study.check_storage(multi_node=len(live) > 1 or bool(autoscaler))
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
            if trials.val_score.isna().all():
                raise GPOError(f"search {base_model.tag}-k{k}: no trial reported a score; see the trials' error files above")
            best = grid.get_best_result(metric=study.metric, mode="max", scope="all")
            params = {key: best.config[key] for key in study.space}
            run = ray.remote(num_cpus=study.resources.cpu, num_gpus=study.resources.gpu,
                             max_retries=study.budget.max_failures)(final_run)  # retries after a lost process or node
            tests = ray.get([run.remote(study, base_model, k, params, seed, shared) for seed in study.seeds])
            for seed, results in zip(study.seeds, tests):
                frames.append(results.assign(kind="test", study=study.name, base_model=base_model.model,
                                             base_layers=base_model.layers, base_params=base_params,
                                             config=json.dumps(params)))
            tested = pd.concat(tests).query("role == 'test'")
            as_trained = (tested.family == "gpo") & ~tested.shrunk
            gpo = tested[as_trained].groupby("seed")["score"].mean()
            summaries.append(
                f"{base_model.tag} k={k}: best {params} val {best.metrics[study.metric]:.4f}; "
                f"trials {int((trials.status == 'completed').sum())} completed, {int((trials.status == 'stopped early').sum())} "
                f"stopped early, {int((trials.status == 'error').sum())} failed; "
                f"test (mean over {len(gpo)} seeds) {gpo.mean():.4f}")
    table = pd.concat(frames, ignore_index=True)
    out = study.root.child("study.parquet")
    out.write_parquet(with_schema(table))
    for line in summaries:
        print(line)
    print(f"study {study.name}: {len(table[table.kind == 'trial'])} trials, wall {time.perf_counter() - start:.0f}s -> {out}")
    return table


SMOKE = {"train.steps": 4, "train.eval_every": 2, "eval.draws": 1}
# searched step counts are clamped too, or the search space would override the smoke size
STEP_KEYS = {"train.steps": 4, "train.eval_every": 2, "train.warmup": 4, "train.ctx_curriculum": 4,
             "llm.lora_steps": 4, "llm.icft_steps": 4}


def clamp(spec: dict, cap: int) -> dict:
    (kind, values), = spec.items()
    if kind == "choice":
        return {kind: sorted({min(v, cap) for v in values})}
    return {kind: [min(v, cap) for v in values]}


def smoke(study: StudyConfig) -> StudyConfig:
    """The same study, shrunk to seconds (CI runs this size of the real script)."""
    study.overrides = [*study.overrides, *(f"{key}={value}" for key, value in SMOKE.items())]
    study.space = {key: clamp(spec, STEP_KEYS[key]) if key in STEP_KEYS else spec for key, spec in study.space.items()}
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

    def sweep() -> None:
        study = load_study(args.study, args.set)
        run_study(smoke(study) if args.smoke_test else study, resume=args.resume)
    return run_command(prog or "gpo sweep", sweep, "finished trials and final runs are kept: continue with --resume")


if __name__ == "__main__":
    sys.exit(main())
