"""How cautious should the per-task shrink be? Its rule takes the most shrunk weight whose
leave-one-out score is within `se` standard errors of the best one (gpo/shrink.py,
`eval.shrink.per_task_se`, 0 shipped); this compares tolerances offline on trained runs, on
their validation tasks (the default: what a default may be chosen on) or, for a protocol that
is only reported and never chooses, their test tasks.

For each run, k and method (the run's GPO and each context-reading baseline, with the
settings the run chooses per k), every task's leave-one-out evidence and its score on its
target questions at each weight of SHRINK are computed once. Each tolerance then picks a weight
per task (never less than the per-k weight, as `eval.shrink.per_task` does; "per-k" is that
weight alone), which replays exactly what `gpo eval` scores. Printed: each method's score minus
the no-context mean prior's per (run, k, method), then per tolerance the mean of those margins,
the lowest one, and how many fall more than 0.001 below the mean prior.

    python bench/per_task_tolerance.py runs/bench-new/opinionqa-new-split0.4-seed0-residual-logit
    python bench/per_task_tolerance.py RUN_DIR ... --role test   # a protocol that chooses nothing
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd
import torch

from gpo import methods as M
from gpo import selection as S
from gpo.baselines import REGISTRY, baseline_method
from gpo.config import load_config
from gpo.evaluate import episodes, predictions, score
from gpo.inputs import prepare
from gpo.pipeline import member_dirs
from gpo.shrink import SHRINK, evidence_weights, held_out_scores, shrunk
from gpo.tasks import make_episode

TOLERANCES = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)


def candidates(prep, cfg, run_dir: Path) -> dict[str, dict[int, tuple]]:
    """{method: {k: (method before the per-task shrink, its validation weight of the mean)}}"""
    checkpoints = [d / "best.pt" for d in member_dirs(run_dir, cfg.train.ensemble)]
    name, gpo, prior, _ = M.load_gpo(checkpoints, prep)
    # a residual GPO is shrunk toward its prior first, then per task toward the mean
    out = {name: {k: (shrunk(gpo, prior, c.shrink), 0.0) if prior else (gpo, c.shrink)
                  for k, c in S.gpo_choices(prep, cfg, name, gpo, prior).items()}}
    for b in cfg.eval.baselines:
        if REGISTRY[b].reads_context:
            out[b] = {k: (baseline_method(b, **c.params), c.shrink) for k, c in S.choose(prep, cfg, b).items()}
    return out


def margins(run_dir: Path, overrides: list[str], role: str) -> pd.DataFrame:
    cfg = load_config(run_dir / "config.yaml", overrides)
    prep = prepare(cfg)
    P, L, basis, mean = prep.points, prep.labels, prep.basis, baseline_method("mean")
    test = prep.index(getattr(prep.split, role))
    weights = torch.tensor(SHRINK, dtype=torch.float64)
    chosen, records = candidates(prep, cfg, run_dir), []
    for k in [k for k in cfg.eval.ks if k >= 2]:
        rows, q = episodes(P, test, k, cfg.eval.draws, cfg.eval.seed, cfg.eval.max_targets)
        reference = predictions(mean, P, L, basis, rows, q, prep.chunk)
        scored = q.tar_ok.any(1).reshape(len(test), -1).any(1)  # groups with targets at this k (as evaluate.py)
        group_mean = lambda s: s.reshape(len(test), -1).mean(1)[scored].mean().item()  # noqa: E731
        for name, per_k in chosen.items():
            method, w_val = per_k[k]
            p = predictions(method, P, L, basis, rows, q, prep.chunk)
            target = torch.stack([score(P, L, (1 - w) * p + w * reference, rows, q, prep.metric) for w in SHRINK], -1)  # (B, W)
            evidence, ok = held_out_scores(method, mean, P, basis, make_episode(P, L, rows, q), prep.chunk, prep.metric,
                                           cfg.eval.shrink.per_task_holdout)
            base = group_mean(target[:, -1])
            for label, tol in [("per-k", None), *((f"se={t:g}", t) for t in TOLERANCES)]:
                w = torch.full((rows.shape[0],), float(w_val), dtype=torch.float64)
                if tol is not None:
                    w = torch.maximum(w, evidence_weights(evidence, ok, tol).double())
                picked = target.gather(1, torch.bucketize(w, weights)[:, None]).squeeze(1)
                records.append({"run": run_dir.name, "k": k, "method": name, "rule": label, "margin": group_mean(picked) - base})
        print(f"{run_dir.name} k={k} done", flush=True)
    return pd.DataFrame(records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--set", nargs="*", default=[], help="config overrides for every run")
    parser.add_argument("--role", choices=["val", "test"], default="val", help="the tasks scored (default: validation)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    table = pd.concat([margins(r, args.set, args.role) for r in args.runs])
    rules = ["per-k", *(f"se={t:g}" for t in TOLERANCES)]
    pd.set_option("display.width", 250)
    wide = table.pivot_table(index=["run", "k", "method"], columns="rule", values="margin")[rules]
    print("method - mean prior, per run, k and method\n" + wide.round(4).to_string())
    summary = table.groupby("rule").margin.agg(mean="mean", lowest="min", below=lambda m: int((m < -0.001).sum()))
    print(f"\nper rule over {len(wide)} (run, k, method) cells: mean margin, lowest, cells below -0.001\n"
          + summary.loc[rules].round(4).to_string())


if __name__ == "__main__":
    main()
