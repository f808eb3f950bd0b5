"""The smoke test's size: `gpo sweep tune/studies/opinionqa.yaml --smoke-test` against the same
smoke study with its searched step counts left as searched (what the smoke test ran before it
clamped them: trials of 300 and 600 steps). Prints wall time and lines of terminal output for
each, and their ratios. Real OpinionQA and MiniLM: run `make demo` (or any sweep) first so the
embeddings are cached, or the first variant pays for them.

    python bench/sweep_smoke.py [--study tune/studies/opinionqa.yaml]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time


def child(study_path: str, storage: str, clamp: bool) -> None:
    from gpo.tune.study import load_study
    from gpo.tune.sweep import run_study, smoke

    study = load_study(study_path, [f"storage={storage}"])
    searched = dict(study.space)
    study = smoke(study)
    if not clamp:
        study.space = {key: searched[key] for key in study.space}
    run_study(study)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default="tune/studies/opinionqa.yaml")
    parser.add_argument("--child", choices=["clamped", "searched"], help=argparse.SUPPRESS)
    parser.add_argument("--storage", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.study, args.storage, args.child == "clamped")
    figures = {}
    for variant in ("clamped", "searched"):
        with tempfile.TemporaryDirectory() as storage:
            start = time.perf_counter()
            out = subprocess.run([sys.executable, __file__, "--study", args.study, "--child", variant, "--storage", storage],
                                 capture_output=True, text=True)
            wall = time.perf_counter() - start
        if out.returncode:
            sys.exit(f"{variant}: failed\n{out.stderr[-3000:]}")
        lines = len((out.stdout + out.stderr).splitlines())
        figures[variant] = wall, lines
        print(f"{variant:>8} step counts: wall {wall:6.1f} s, {lines:5d} lines of output")
    (w1, l1), (w0, l0) = figures["clamped"], figures["searched"]
    print(f"smoke test now / before: wall {w1 / w0:.2f}x, output {l1 / l0:.2f}x")


if __name__ == "__main__":
    main()
