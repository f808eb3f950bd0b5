"""The paper's LLM baselines beside GPO on one OpinionQA split: alignment and compute.

A subset fixed before any run: split seed 0 of `configs/demo.yaml`, its first `--groups` test
groups, one context draw of k questions per group (the eval seed's), the next `--max-targets`
questions of each group as targets. Every method is scored on those same episodes: GPO (the
default variant and the paper's, each meta-trained once on the training groups), the mean, the
log-linear pool and the kernel baseline (their settings chosen on validation groups), and the
LLM baselines on `--model` (a short name such as smollm2-135m, a local path or a hub id). With no
`--model`, a random-init GPT-2-style LM: then only the compute is meaningful.

    python bench/llm_baselines.py --model smollm2-135m --methods zero_shot steered few_shot
    python bench/llm_baselines.py --methods sft reward icft          # compute, random-init LM
"""

from __future__ import annotations

import argparse
import tempfile
import time

import pandas as pd
import torch

from gpo.config import load_config
from gpo.evaluate import evaluate
from gpo.inputs import prepare
from gpo.llm import LLM_BASELINES
from gpo.llm.methods import LLM, make
from gpo.llm.random_model import build as random_lm
from gpo.methods import build
from gpo.pipeline import run_training
from gpo.tasks import kind_of

GPO_VARIANTS = {"default": [], "paper": ["model.prior=none", "train.loss=gaussian"]}


def scored(name, method, prep, test, args, seed) -> dict:
    """One method on the subset: its alignment (mean and worst group) and its seconds."""
    start = time.perf_counter()
    rows = evaluate({name: method}, prep.points, prep.labels, prep.basis, test, prep.data.tasks, [args.k], 1, seed,
                    max_targets=args.max_targets)
    return {"method": name, "alignment": rows.score.mean(), "worst group": rows.score.min(),
            "train_s": getattr(method, "train_seconds", 0.0) or 0.0, "total_s": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="", help="the causal LM (default: a random-init one of --layers x --width)")
    parser.add_argument("--methods", nargs="*", default=["zero_shot", "steered", "few_shot"], choices=LLM_BASELINES)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--groups", type=int, default=3, help="test groups in the subset")
    parser.add_argument("--max-targets", type=int, default=10, help="target questions per group")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--set", nargs="*", default=[], help="extra overrides (e.g. llm.steer=bio)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        common = [f"out_dir={tmp}", f"eval.ks=[{args.k}]", "eval.draws=1", f"eval.max_targets={args.max_targets}",
                  "eval.shrink.enabled=false", *args.set]
        cfg = load_config("configs/demo.yaml", ["name=default", *common])
        prep = prepare(cfg)
        test = prep.index(prep.split.test)[: args.groups]  # scored once per method, never to choose
        rows = []
        for variant, overrides in GPO_VARIANTS.items():
            vcfg = load_config("configs/demo.yaml", [f"name={variant}", *common, *overrides])
            start = time.perf_counter()
            checkpoints = run_training(prep, vcfg)
            seconds = time.perf_counter() - start
            methods, _, _ = build(prep, vcfg, checkpoints, llm_names=[])
            for name, method in methods.items():
                gpo = kind_of(name, method).family == "gpo"
                if variant == "default" or gpo:
                    rows.append(scored(name, method, prep, test, args, cfg.eval.seed) | ({"train_s": seconds} if gpo else {}))
        cfg.llm.model = args.model or random_lm(f"{tmp}/lm", prep.data.questions, n_embd=args.width, n_layer=args.layers,
                                                n_head=4)
        start = time.perf_counter()
        llm = LLM(cfg.llm, "cpu")
        load_s = time.perf_counter() - start
        n_params = sum(p.numel() for p in llm.model.parameters())
        for name in args.methods:
            rows.append(scored(f"llm-{name}", make(name, llm, prep.data.text, prep.points, prep.basis, args.k),
                               prep, test, args, cfg.eval.seed))
    what = args.model or "a random-init GPT-2-style LM (compute only)"
    print(f"LLM: {what}, {n_params / 1e6:.0f}M parameters, loaded in {load_s:.0f} s; steering style {cfg.llm.steer}; "
          f"{torch.get_num_threads()} threads")
    print(f"subset: {', '.join(prep.data.tasks[g] for g in test)} (split seed {cfg.data.split_seed}); k = {args.k}, "
          f"1 draw, {args.max_targets} targets per group; GPO {cfg.train.steps} steps, trained once")
    table = pd.DataFrame(rows).set_index("method")
    print(table.round({"alignment": 4, "worst group": 4, "train_s": 1, "total_s": 1}).to_string())


if __name__ == "__main__":
    main()
