"""Compute of the LLM baselines vs GPO on one OpinionQA split: training seconds.

The causal LM is random-init (no real weights offline: gpo/llm/random_model.py), so only
the compute is meaningful, not the alignment. GPO is the demo config's training run.

    python bench/llm_baselines.py [--layers 4] [--width 256] [--groups 3] [--max-targets 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from gpo.config import load_config
from gpo.evaluate import evaluate
from gpo.inputs import prepare
from gpo.llm.methods import LLM, make
from gpo.llm.random_model import build
from gpo.pipeline import run_training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--groups", type=int, default=3, help="test groups scored by the per-episode baselines")
    parser.add_argument("--max-targets", type=int, default=5)
    parser.add_argument("--k", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config("configs/demo.yaml", [f"out_dir={tmp}", "name=gpo", f"eval.ks=[{args.k}]", "eval.draws=1",
                                                 f"eval.max_targets={args.max_targets}", "llm.icft_steps=100"])
        prep = prepare(cfg)
        start = time.perf_counter()
        run_training(prep, cfg)
        gpo_s = time.perf_counter() - start
        cfg.llm.model = build(f"{tmp}/lm", prep.data.questions, n_embd=args.width, n_layer=args.layers, n_head=4)
        llm = LLM(cfg.llm, "cpu")
        n_params = sum(p.numel() for p in llm.model.parameters())
        test = prep.index(prep.split.test)[: args.groups]
        print(f"random-init GPT-2-style LM: {n_params / 1e6:.1f}M parameters; {len(test)} test groups x 1 draw, "
              f"k={args.k}, {args.max_targets} targets each")
        print(f"GPO (configs/demo.yaml, {cfg.train.steps} steps): training {gpo_s:.1f}s")
        for name in ("sft", "reward", "icft"):
            start = time.perf_counter()
            method = make(name, llm, prep.data.text, prep.points, prep.basis, args.k)
            evaluate({name: method}, prep.points, prep.labels, prep.basis, test, prep.data.groups, [args.k], 1, cfg.eval.seed,
                     max_targets=args.max_targets)
            total = time.perf_counter() - start
            per = f" ({method.train_seconds / len(test):.1f}s per test group)" if name != "icft" else ""
            print(f"{name:>7}: training {method.train_seconds:.1f}s{per}, training + scoring {total:.1f}s "
                  f"-> {method.train_seconds / gpo_s:.2f}x GPO's training")


if __name__ == "__main__":
    main()
