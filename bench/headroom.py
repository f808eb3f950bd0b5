"""Headroom: how alignment grows with the number of context questions k, against the
log-linear pool's ceiling, on the test groups of the quality protocol (bench/quality.py: the
same splits, test groups and episodes).

Methods, each with its hyperparameters chosen on the validation groups at the same k:
- logit: the log-linear pool of the training groups fitted on the k context questions;
- kernel: the pool plus a Gaussian-kernel ridge correction on embeddings and basis shares;
- mixture: the issue's reference baseline;
- oracle-pool: NOT a method: the pool whose weights maximise the alignment on every question
  of the test group, targets included (gradient ascent from the least-squares fit): about the
  best any log-linear pool of these training groups scores on that group, at any k.
  Ordinal surveys only (OpinionQA); left out otherwise.

    python bench/headroom.py                      # OpinionQA, split 0.4, split seeds 0-2, k = 20 ... 400
    python bench/headroom.py --config configs/globalopinionqa.yaml --splits 0.4 0.6 0.8 --ks 20
    python bench/headroom.py --seeds 0 --ks 20 100 --draws 2     # a smoke run
"""

from __future__ import annotations

import argparse
import itertools
import logging
from pathlib import Path

import pandas as pd
import torch

from gpo.analysis.paired import paired
from gpo.analysis.report import save_bench_report
from gpo.config import load_config
from gpo.evaluate import evaluate
from gpo.inputs import prepare
from gpo.metrics import ordinal_alignment
from gpo.ops import centred_log, segment_softmax
from gpo.selection import baseline, choose


def oracle_pool(labels: torch.Tensor, eps: float = 0.003, steps: int = 300):
    """The log-linear pool whose weights maximise the row's alignment on all its own questions
    (every question ordinal). Not a method: it reads the group's shares of its targets, which
    only the scorer holds (`labels`), and is handed them here on purpose."""
    def predict(points, basis, episode):
        pq, qp = points.point_question, points.question_points
        mask = qp >= 0
        L = centred_log(basis.y, pq, eps).T  # (P, J)
        y = labels[episode.tasks].nan_to_num(0)
        w = torch.linalg.lstsq(L, centred_log(y, pq, eps).T).solution.T.clone().requires_grad_()  # (B, J)
        true = (y[:, qp.clamp_min(0)] * mask).double()
        ordinal = points.ordinal.expand(len(y), -1, -1)
        available = points.available[episode.tasks]
        optimiser = torch.optim.Adam([w], lr=0.01)
        with torch.enable_grad():
            for _ in range(steps):
                optimiser.zero_grad()
                p = segment_softmax(w @ L.T, pq.expand(len(y), -1))[:, qp.clamp_min(0)] * mask
                per_question = ordinal_alignment(p.double(), true, ordinal, mask.expand_as(p))
                (-(per_question * available).sum()).backward()
                optimiser.step()
        return segment_softmax(w.detach() @ L.T, pq.expand(len(y), -1))
    return predict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--splits", nargs="*", type=float, default=[0.4])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2], help="group split seeds")
    parser.add_argument("--ks", nargs="*", type=int, default=[20, 50, 100, 200, 400])
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--out", default="runs/bench-headroom")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    frames = []
    for split, seed in itertools.product(args.splits, args.seeds):
        base = [f"data.train_fraction={split}", f"data.split_seed={seed}", f"eval.draws={args.draws}"]
        prep = prepare(load_config(args.config, base))
        for k in args.ks:
            cfg = load_config(args.config, base + [f"train.val_k={k}"])
            methods = {name: baseline(name, choose(prep, cfg, name)) for name in ("logit", "kernel", "mixture")}
            if prep.points.is_ordinal.all():
                methods["oracle-pool"] = oracle_pool(prep.labels)
            results = evaluate(methods, prep.points, prep.labels, prep.basis, prep.index(prep.split.test), prep.data.tasks,
                               [k], args.draws, cfg.eval.seed)
            frames.append(results.assign(split=split, seed=seed))
            print(f"split {split} seed {seed} k={k}: " + ", ".join(
                f"{m} {v:.4f}" for m, v in results.groupby("method").alignment.mean().items()), flush=True)
    results = pd.concat(frames)
    per_seed = results.groupby(["split", "k", "method", "seed"]).alignment.agg(["mean", "min"])
    table = per_seed.groupby(["split", "k", "method"]).mean().unstack("method")
    lines = [f"{args.config}, split seeds {args.seeds}, {args.draws} draws per test group",
             "mean over seeds of the mean over test groups:", table["mean"].round(4).to_string(),
             "worst test group (mean over seeds):", table["min"].round(4).to_string(), ""]
    for (split, k), part in results.groupby(["split", "k"]):
        for a, b in [("kernel", "logit"), ("kernel", "mixture"), ("logit", "mixture"), ("oracle-pool", "logit")]:
            if {a, b} <= set(part.method):
                d = paired(part, a, b)
                lines.append(f"split {split} k={k}: {a} - {b}: {d['mean']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}]")
    save_bench_report("\n".join(lines), results, Path(args.out), "results.parquet")


if __name__ == "__main__":
    main()
