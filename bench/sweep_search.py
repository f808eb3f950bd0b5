"""Sweep benchmarks: Optuna TPE + ASHA vs random search at the same compute, and Tune's overhead.

1. Search quality: each method runs with the same budget of training steps summed over its
   trials (a Tune stopper ends the sweep there), `--repeats` times with different seeds.
   Reported: the best validation alignment reached, and the training steps spent until the
   best-so-far came within 0.5 points (0.005) of the best any run found.
2. Overhead: one trial through Tune vs the same training run called directly (wall ratio).

    python bench/sweep_search.py [--study bench/sweep_study.yaml] [--budget 6000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import replace

import pandas as pd
from ray import tune

from gpo.embed.distributed import init_ray
from gpo.inputs import assemble, load_inputs
from gpo.pipeline import run_training
from gpo.tune.study import load_study
from gpo.tune.sweep import search


class StepBudget(tune.Stopper):
    """Stop the whole sweep once the trials' training steps add up to `budget`."""

    def __init__(self, budget: int):
        self.budget, self.steps = budget, {}

    def __call__(self, trial_id, result):
        self.steps[trial_id] = result.get("step", 0)
        return False

    def stop_all(self):
        return sum(self.steps.values()) >= self.budget


def progress_curve(grid) -> pd.DataFrame:
    """(cumulative steps, best-so-far score) in the order results arrived."""
    rows = []
    for r in grid:
        h = r.metrics_dataframe
        if h is not None and "step" in h:
            steps = h["step"].diff().fillna(h["step"])
            rows += [{"t": t, "steps": s, "score": v} for t, s, v in zip(h["timestamp"], steps, h["best_val_score"])]
    curve = pd.DataFrame(rows).sort_values("t")
    curve["spent"] = curve["steps"].cumsum()
    curve["best"] = curve["score"].cummax()
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default="bench/sweep_study.yaml")
    parser.add_argument("--budget", type=int, default=6000, help="training steps per sweep, summed over trials")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    init_ray()
    study = load_study(args.study)
    base_model, k = study.base_models[0], study.val_ks[0]
    inputs = load_inputs(study.experiment(base_model, k))
    curves = {}
    for method in ("optuna", "random"):
        for seed in range(args.repeats):
            run = replace(study, name=f"{study.name}-{method}-{seed}-{int(time.time())}",
                          budget=replace(study.budget, searcher=method, seed=seed, num_samples=1000))
            curves[method, seed] = progress_curve(search(run, base_model, k, inputs, resume=False, stop=StepBudget(args.budget)))
    best = max(c["best"].max() for c in curves.values())
    print(f"budget {args.budget} training steps per sweep; best validation alignment over all runs {best:.4f}")
    for (method, seed), c in curves.items():
        near = c[c["best"] >= best - 0.005]
        reached = f"{int(near['spent'].iloc[0])} steps" if len(near) else "never"
        print(f"{method:>6} seed {seed}: best {c['best'].max():.4f} after {int(c['spent'].iloc[-1])} steps; "
              f"within 0.005 of the overall best: {reached}")
    for method in ("optuna", "random"):
        scores = [curves[method, s]["best"].max() for s in range(args.repeats)]
        print(f"{method:>6}: mean best {sum(scores) / len(scores):.4f} over {args.repeats} repeats")

    # 2. Tune overhead: the same single run, directly and as a one-trial sweep
    params = {key: spec.get("choice", [None])[0] for key, spec in study.space.items() if "choice" in spec}
    cfg = study.experiment(base_model, k, params, extra=[f"out_dir={study.root}/direct-{time.time()}"])
    start = time.perf_counter()
    run_training(assemble(*inputs, "cpu"), cfg)
    direct = time.perf_counter() - start
    one = replace(study, name=f"{study.name}-one-{int(time.time())}", space={key: {"choice": [v]} for key, v in params.items()},
                  budget=replace(study.budget, num_samples=1, searcher="random"))
    start = time.perf_counter()
    search(one, base_model, k, inputs, resume=False)
    through_tune = time.perf_counter() - start
    print(f"one run: direct {direct:.1f}s, through Tune {through_tune:.1f}s -> ratio {through_tune / direct:.2f}")


if __name__ == "__main__":
    main()
