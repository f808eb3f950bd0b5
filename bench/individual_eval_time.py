"""Evaluation time on the individual task: every method of a finished run (GPO as trained and
shrunk, every baseline with its validation-chosen settings) on every test respondent, at the
run's k's x draws (configs/individual.yaml: 5 x 5), each method timed alone. Choosing the
settings is timed apart (it reads the validation respondents). Only times are printed: the
test respondents' scores are computed, as `gpo eval` does, and never read.

    python bench/individual_eval_time.py runs/bench-individual/individual-split0.4-seed0-residual-population
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch

from gpo.config import load_config
from gpo.evaluate import evaluate
from gpo.inputs import prepare
from gpo.methods import build
from gpo.pipeline import member_dirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(2)
    cfg = load_config(args.run / "config.yaml")
    prep = prepare(cfg)
    start = time.perf_counter()
    methods, _, _ = build(prep, cfg, [d / "best.pt" for d in member_dirs(args.run, cfg.train.ensemble)])
    chosen = time.perf_counter() - start
    test = prep.index(prep.split.test)
    times = {}
    for name, method in methods.items():
        start = time.perf_counter()
        evaluate({name: method}, prep.points, prep.labels, prep.basis, test, prep.data.groups, cfg.eval.ks, cfg.eval.draws,
                 cfg.eval.seed, prep.chunk, cfg.eval.max_targets, metrics=prep.metrics)
        times[name] = time.perf_counter() - start
    print(f"{len(test)} test respondents x {len(cfg.eval.ks)} k's x {cfg.eval.draws} draws; {torch.get_num_threads()} threads")
    for name, s in times.items():
        print(f"  {name:28s} {s:7.1f} s")
    print(f"every method: {sum(times.values()):.1f} s (choosing the settings on the validation respondents before: {chosen:.1f} s)")


if __name__ == "__main__":
    main()
