"""Evaluation time on the individual task: every method of a finished run (GPO as trained and
shrunk, every baseline with its validation-chosen settings) on every test respondent, at the
run's k's x draws (configs/individual.yaml: 5 x 5), in process: each method alone, then every
method in one pass, as a run evaluates them (episodes and answers gathered once for all).
Choosing the settings is timed apart (it reads the validation respondents).

`--baseline REF` measures the project at git commit REF (a worktree, imported in place of this
checkout) and this checkout in turn, each in its own process on the same run, and prints the
ratio; the two evaluations' test scores are compared (largest difference per method), never
reported.

    python bench/individual_eval_time.py runs/individual --baseline 10932fb
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from worktree import ROOT, environment, worktree


def measure(run: Path, scores: Path) -> dict:
    import torch

    from gpo.config import load_config
    from gpo.evaluate import evaluate
    from gpo.inputs import prepare
    from gpo.methods import build
    from gpo.pipeline import member_dirs

    torch.set_num_threads(2)
    cfg = load_config(run / "config.yaml", [f"embed.cache_dir={ROOT / '.cache' / 'embeddings'}", "embed.workers=0"])
    prep = prepare(cfg)
    start = time.perf_counter()
    methods, _, _ = build(prep, cfg, [d / "best.pt" for d in member_dirs(run, cfg.train.ensemble)])
    chosen = time.perf_counter() - start
    test = prep.index(prep.split.test)
    import pandas as pd

    times, frames = {}, []
    for name, method in methods.items():
        start = time.perf_counter()
        frames.append(evaluate({name: method}, prep.points, prep.labels, prep.basis, test, list(prep.row_of), cfg.eval.ks,
                               cfg.eval.draws, cfg.eval.seed, prep.chunk, cfg.eval.max_targets, metrics=prep.metrics))
        times[name] = time.perf_counter() - start
    start = time.perf_counter()  # all together, as a run evaluates them
    evaluate(methods, prep.points, prep.labels, prep.basis, test, list(prep.row_of), cfg.eval.ks, cfg.eval.draws,
             cfg.eval.seed, prep.chunk, cfg.eval.max_targets, metrics=prep.metrics)
    together = time.perf_counter() - start
    pd.concat(frames).to_parquet(scores)
    return {"tasks": len(test), "ks": len(cfg.eval.ks), "draws": cfg.eval.draws, "threads": torch.get_num_threads(),
            "choose_s": chosen, "times": times, "together_s": together}


def child(run: Path, scores: Path, code: Path | None) -> dict:
    out = subprocess.run([sys.executable, __file__, str(run.resolve()), "--one", str(scores)], env=environment(code), cwd=code or ROOT,
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{'baseline' if code else 'this checkout'}: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--baseline", help="a git commit to measure beside this checkout")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # a child: measure, write scores there
    args = parser.parse_args()
    if args.one:
        logging.basicConfig(level=logging.WARNING)
        print(json.dumps(measure(args.run, args.one)))
        return
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs = {}
        with worktree(args.baseline) as base:
            if base:
                runs["baseline"] = child(args.run, tmp / "base.parquet", base)
        runs["now"] = child(args.run, tmp / "now.parquet", None)
        now = runs["now"]
        print(f"{now['tasks']} test respondents x {now['ks']} k's x {now['draws']} draws; {now['threads']} threads")
        head = f"  {'method':28s} {'now s':>8s}" + (f" {args.baseline + ' s':>14s} {'ratio':>7s} {'max |score diff|':>17s}"
                                                     if args.baseline else "")
        print(head)
        diff = {}
        if args.baseline:
            a, b = pd.read_parquet(tmp / "base.parquet"), pd.read_parquet(tmp / "now.parquet")
            both = a.merge(b, on=["method", "k", "task"], suffixes=("_a", "_b"))
            diff = (both.score_a - both.score_b).abs().groupby(both.method).max().to_dict()
        for name, s in now["times"].items():
            line = f"  {name:28s} {s:8.1f}"
            if args.baseline:
                old = runs["baseline"]["times"].get(name)
                line += f" {old:14.1f} {old / s:6.2f}x {diff.get(name, float('nan')):17.2e}" if old else "  (not in the baseline)"
            print(line)
        for label, key in (("sum of the above", None), ("every method in one pass", "together_s")):
            total = now[key] if key else sum(now["times"].values())
            line = f"  {label:28s} {total:8.1f}"
            if args.baseline:
                old = runs["baseline"][key] if key else sum(runs["baseline"]["times"].values())
                line += f" {old:14.1f} {old / total:6.2f}x"
            print(line)
        print(f"choosing the settings on the validation respondents before: {now['choose_s']:.1f} s"
              + (f" (baseline {runs['baseline']['choose_s']:.1f} s)" if args.baseline else ""))


if __name__ == "__main__":
    main()
