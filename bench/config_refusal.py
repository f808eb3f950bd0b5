"""How long a bad config or study takes to be refused: `gpo run BAD.yaml` and `gpo sweep
BAD.yaml`, each in a fresh interpreter, the median of `--repeat` runs (wall clock, start-up
included). A config's form (keys, types, ranges) and the names the registries hold (baselines,
priors, features, losses) are checked before torch loads.

`--baseline REF` measures `gpo run` at git commit REF too (a worktree imported in place of
this checkout, each case alternating between the two) and prints the ratio. The sweep case is
measured on this checkout only: a worktree's `gpo.tune` is not importable in place.

    python bench/config_refusal.py --baseline 10932fb
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from worktree import ROOT, environment, worktree

CONFIGS = {  # case -> the bad config's text
    "unknown key": "train:\n  stepz: 3\n",
    "value out of range": "train:\n  lr: -1.0\n",
    "unknown baseline": "eval:\n  baselines: [meen]\n",
}
STUDY = "name: bad\nbase: configs/demo.yaml\nspace:\n  model.d_modle: {choice: [64, 128]}\n"


def refusal_s(argv: list[str], code: Path | None) -> float:
    """Seconds from starting an interpreter to its refusal of `argv` (exit status 2 expected)."""
    script = f"import sys\nfrom gpo.cli import main\nsys.exit(main({argv!r}))"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment(code), cwd=code or ROOT)
    seconds = time.perf_counter() - start
    if done.returncode != 2:
        sys.exit(f"{argv} at {code or ROOT}: expected a refusal (exit 2), got {done.returncode}: {done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", help="git commit to compare with")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, worktree(args.baseline) as base:
        tmp = Path(tmp)
        cases = {}
        for case, text in CONFIGS.items():
            path = tmp / f"{case.replace(' ', '-')}.yaml"
            path.write_text(text)
            cases[f"gpo run: {case}"] = (["run", str(path)], base)
        (tmp / "study.yaml").write_text(STUDY)
        cases["gpo sweep: unknown space key"] = (["sweep", str(tmp / "study.yaml")], None)
        print(f"median of {args.repeat} fresh interpreters, start-up included")
        for case, (argv, baseline) in cases.items():
            now, then = [], []
            for _ in range(args.repeat):
                now.append(refusal_s(argv, None))
                if baseline:
                    then.append(refusal_s(argv, baseline))
            line = f"  {case:32s} {statistics.median(now):6.2f} s"
            if baseline:
                old = statistics.median(then)
                line += f"   at {args.baseline}: {old:6.2f} s   ({old / statistics.median(now):.1f}x faster)"
            print(line)


if __name__ == "__main__":
    main()
