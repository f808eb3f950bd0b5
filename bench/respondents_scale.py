"""Scale of the individual task: time and peak memory per phase for a synthetic population of
respondents (gpo/data/synthetic.py SyntheticRespondents, random point features), each size in
its own process so that its peak resident memory is its own.

Phases, as `gpo run configs/individual.yaml` goes through them: load (answers -> survey arrays,
a split by form), assemble (tensors and the panel of training respondents), choose (every
baseline's settings on the validation respondents), train step (one GPO meta-training step, the
config's batch), evaluate (every method, GPO untrained, on every test respondent at 4 k's, one
draw; each method alone, or with --one-pass every method in one evaluation, as a run does). The
peak is the process's largest resident set so far (ru_maxrss), after each phase. Test
respondents are independent of each other, so at scale `--max-test N` evaluates a seeded N of
them and prints the full population's time as measured x (all / N); knn compares each with every
training respondent, so its time grows with both.

`--baseline REF` measures the project at git commit REF (a worktree imported in place of this
checkout) after this checkout, size by size, and prints the ratio of their evaluation times.

    python bench/respondents_scale.py                      # W41's size and 100,000 x 100
    python bench/respondents_scale.py --sizes 100000x100 --set data.val_fraction=0.025 --baseline 10932fb --baseline-max-test 5000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from worktree import ROOT, environment, worktree


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(respondents: int, questions: int, ks: list[int], max_test: int | None, overrides: list[str],
            one_pass: bool = False) -> dict:
    import numpy as np
    import torch

    from gpo.config import load_config
    from gpo.data.synthetic import SyntheticRespondents
    from gpo.evaluate import evaluate
    from gpo.features import gpo_inputs
    from gpo.inputs import assemble, load_respondents
    from gpo.losses import LOSSES
    from gpo.methods import build, feature_params, gpo_features, gpo_method
    from gpo.model import GPO
    from gpo.selection import baseline, choose
    from gpo.tasks import make_episode, sample_questions

    torch.set_num_threads(2)
    cfg = load_config("configs/individual.yaml", ["embed.model=synthetic", f"eval.ks={ks}", f"train.val_k={ks[-1]}",
                                                  "eval.draws=1", *overrides])
    phases = {}

    def phase(name, start):
        phases[name] = {"s": round(time.perf_counter() - start, 2), "peak_mb": round(rss_mb())}

    responses, x, _ = SyntheticRespondents(n_respondents=respondents, n_questions=questions).build()
    start = time.perf_counter()
    data, split = load_respondents(cfg, responses)
    phase("load", start)
    start = time.perf_counter()
    prep = assemble(data, split, x, "cpu")
    phase("assemble", start)
    start = time.perf_counter()
    methods, _, _ = build(prep, cfg, [])
    phase("choose", start)
    features = gpo_features(prep, cfg.model, feature_params(prep, cfg))
    model = GPO(cfg.model, features.width)
    prior = baseline(cfg.model.prior, choose(prep, cfg, cfg.model.prior)) if cfg.model.prior != "none" else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    rows = torch.tensor(prep.index(split.train[:cfg.train.batch_groups]))
    q = sample_questions(prep.points.available[rows], 20, 20, torch.Generator().manual_seed(0))
    episode = make_episode(prep.points, prep.labels, rows, q)
    start = time.perf_counter()
    mean, log_std = model(**gpo_inputs(features, prep.points, prep.basis, episode, prior))
    target = prep.labels[rows[:, None], episode.tar.clamp_min(0)].nan_to_num(0.0)
    LOSSES[cfg.train.loss](mean, log_std, target, episode.segment).backward()
    optimizer.step()
    phase("train step", start)
    methods = {"gpo": gpo_method(model.eval(), features, prior), **methods}
    test = split.test  # the split lists respondents form by form: a cap draws across forms
    if max_test and max_test < len(test):
        test = [test[i] for i in sorted(np.random.default_rng(0).choice(len(test), max_test, replace=False))]
    times = {}
    start = time.perf_counter()
    for name, group in ({"every method in one pass": methods} if one_pass else {n: {n: m} for n, m in methods.items()}).items():
        t = time.perf_counter()
        evaluate(group, prep.points, prep.labels, prep.basis, prep.index(test), list(prep.row_of), ks, 1,
                 cfg.eval.seed, prep.chunk, metrics=prep.metrics)
        times[name] = round(time.perf_counter() - t, 1)
    phase("evaluate", start)
    phases["evaluate"]["per method s"] = times
    return {"respondents": respondents, "questions": questions, "points": data.n_points, "train": len(split.train),
            "test": len(split.test), "evaluated": len(test), "phases": phases}


def child(size: str, args, max_test: int | None, code: Path | None) -> dict:
    """One size measured in its own process, importing the project from `code` (a worktree of
    another commit) or from this checkout."""
    cap = ["--max-test", str(max_test)] if max_test else []
    out = subprocess.run([sys.executable, __file__, "--one", size, "--ks", *map(str, args.ks), *cap,
                          *(["--one-pass"] if args.one_pass else []), "--set", *args.set],
                         capture_output=True, text=True, env=environment(code), cwd=code or ROOT)
    if out.returncode:
        sys.exit(f"{size} ({'baseline' if code else 'this checkout'}): {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(result: dict, label: str) -> None:
    scale = result["test"] / result["evaluated"]
    print(f"{label}: {result['respondents']:,} respondents x {result['questions']} questions ({result['points']} points; "
          f"{result['train']:,} training, {result['test']:,} test respondents, {result['evaluated']:,} evaluated):")
    for name, p in result["phases"].items():
        extra = f"  {p['per method s']}" if "per method s" in p else ""
        if "per method s" in p and scale > 1:
            extra += f"; all {result['test']:,} test respondents: {p['s'] * scale:.0f} s"
        print(f"  {name:10s} {p['s']:8.2f} s   peak {p['peak_mb']:6.0f} MB{extra}")


def evaluation_s(result: dict) -> float:
    """The evaluation's time for every test respondent (measured, or scaled from those evaluated)."""
    return result["phases"]["evaluate"]["s"] * result["test"] / result["evaluated"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="*", default=["2524x90", "100000x100"], help="RESPONDENTSxQUESTIONS")
    parser.add_argument("--ks", nargs="*", type=int, default=[0, 5, 10, 20])
    parser.add_argument("--max-test", type=int, help="evaluate this many test respondents and scale the time to all")
    parser.add_argument("--baseline", help="a git commit measured beside this checkout, size by size")
    parser.add_argument("--baseline-max-test", type=int, help="--max-test for the baseline (default: --max-test)")
    parser.add_argument("--one-pass", action="store_true", help="every method in one evaluation, as a run does (no per-method times)")
    parser.add_argument("--set", nargs="*", default=[], help="config overrides (e.g. data.val_fraction)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child process measuring one size
    args = parser.parse_args()
    if args.one:
        r, q = map(int, args.one.split("x"))
        print(json.dumps(measure(r, q, args.ks, args.max_test, args.set, args.one_pass)))
        return
    with worktree(args.baseline) as base:
        for size in args.sizes:
            now = child(size, args, args.max_test, None)
            report(now, "this checkout")
            if base:
                old = child(size, args, args.baseline_max_test or args.max_test, base)
                report(old, args.baseline)
                print(f"  evaluation of every test respondent: {evaluation_s(old):.0f} s at {args.baseline}, "
                      f"{evaluation_s(now):.0f} s now: {evaluation_s(old) / evaluation_s(now):.2f}x")


if __name__ == "__main__":
    main()
