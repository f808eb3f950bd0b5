"""Evaluation in process against evaluation over a local Ray (eval.backend), on one machine:
every method of a finished run on its test respondents, in shards of eval.shard_tasks, the same
shards both ways; Ray's time includes starting it (what `gpo eval` on one machine would pay).
Prints both times and their ratio; the scores are checked equal, never printed.

    python bench/eval_backends.py runs/individual
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import pandas as pd
import torch

from gpo.config import load_config
from gpo.evaluate import evaluate
from gpo.inputs import prepare
from gpo.methods import build
from gpo.pipeline import member_dirs
from gpo.shards import sharded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--shard-tasks", type=int, help="default: the run's eval.shard_tasks")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cfg = load_config(args.run / "config.yaml", ["embed.workers=0"])
    prep = prepare(cfg)
    methods, _, _ = build(prep, cfg, [d / "best.pt" for d in member_dirs(args.run, cfg.train.ensemble)])
    test = prep.index(prep.split.test)
    size = args.shard_tasks or cfg.eval.shard_tasks
    times, results = {}, {}
    for backend in ("process", "ray"):
        torch.set_num_threads(2)
        start = time.perf_counter()
        results[backend] = evaluate(methods, prep.points, prep.labels, prep.basis, test, prep.data.tasks, cfg.eval.ks,
                                    cfg.eval.draws, cfg.eval.seed, prep.chunk, cfg.eval.max_targets, metrics=prep.metrics,
                                    runner=sharded(size, backend=backend))
        times[backend] = time.perf_counter() - start
    pd.testing.assert_frame_equal(results["process"], results["ray"])
    shards = -(-len(test) // size)
    print(f"{len(test)} test respondents in {shards} shard(s) of {size}, {len(methods)} methods, "
          f"{len(cfg.eval.ks)} k's x {cfg.eval.draws} draws")
    print(f"  in process (2 threads):              {times['process']:7.1f} s")
    print(f"  local Ray (a task per shard, 1 CPU):  {times['ray']:7.1f} s (starting Ray included)")
    print(f"  ratio Ray / in process: {times['ray'] / times['process']:.2f}")


if __name__ == "__main__":
    main()
