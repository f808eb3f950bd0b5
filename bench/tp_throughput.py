"""DeepSpeed tensor parallelism on CPU: one replica of tp = 2 rank actors vs one of tp = 1, same cores.

A random-init Llama-style model (gpo/llm/random_model.py; by default 1024 wide, 8 blocks, about
100M parameters, so that the matrix products dominate) embeds the same OpinionQA questions
through the Ray path (`distributed.extract`, prefix sharing on) as:
  - baseline: tp = 1, plain transformers, one actor with all the threads;
  - tp = 1 with one thread (what one core does alone);
  - tp = 2: DeepSpeed AutoTP, two rank actors with half the threads each (gloo + DeepSpeed's
    shared-memory all-reduce).
The variants take turns `--repeats` times (best of, so a burst of background load hits them
alike). It prints points/s and the ratio to the baseline, each rank's parameter bytes (the
memory tensor parallelism saves per process) and the largest difference between the baseline's
and tp = 2's embeddings. Timings exclude starting Ray and loading the model (each run's first
shard is sent once its replica has loaded). `--write-model DIR` only writes a random-init Llama
folder (for `gpo embed`).

    python bench/tp_throughput.py [--questions 24] [--repeats 2] [--threads 2] [--width 1024] [--layers 8]
    python bench/tp_throughput.py --write-model /tmp/llama-rand --width 256 --layers 2
    python bench/tp_throughput.py --model qwen2.5-coder-0.5b --questions 8 --repeats 1   # real weights (models folder)

`--model` runs the same comparison on a real model (any `embed.model`: a GGUF of the models folder,
a folder, a hub id) in place of the random one, and prints the largest difference between tp = 2
and tp = 1 also relative to the embeddings' largest value.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from gpo.config import EmbedConfig, load_config
from gpo.embed import distributed
from gpo.embed.cache import EmbeddingCache
from gpo.inputs import load_survey
from gpo.llm.random_model import build


def run(model: str, data, n_questions: int, cfg: EmbedConfig, root: str):
    cache = EmbeddingCache.open(root, {"model": model}, data.qids[:n_questions],
                                data.n_options[:n_questions].tolist(), cfg.shard_size)
    questions = list(zip(data.questions, data.options))
    stats = distributed.extract(cache, cache.shards, questions, cfg)
    return cache.load(), stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per replica (split over its ranks)")
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--shard-size", type=int, default=8, help="questions per shard")
    parser.add_argument("--write-model", metavar="DIR", help="only write the random-init model to DIR")
    parser.add_argument("--model", help="a real model (embed.model) in place of the random-init Llama")
    args = parser.parse_args()
    data, _, _ = load_survey(load_config("configs/demo.yaml"))
    if args.write_model:
        print(build(args.write_model, data.questions, n_embd=args.width, n_layer=args.layers, n_head=args.heads, arch="llama"))
        return
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or build(Path(tmp) / "llama", data.questions, n_embd=args.width, n_layer=args.layers,
                                    n_head=args.heads, arch="llama")
        n = min(args.questions, len(data.qids))
        n_points = int(data.n_options[:n].sum())
        ray = distributed.init_ray("local")  # a private Ray, not one another process left running
        base = EmbedConfig(model=model, prefix_sharing="on", workers=1, shard_size=args.shard_size)
        variants = {
            "tp=1 (hf)": replace(base, backend="hf", tp=1, threads=args.threads),
            "tp=1 (hf), 1 thread": replace(base, backend="hf", tp=1, threads=1),
            "tp=2 (deepspeed AutoTP)": replace(base, backend="deepspeed", tp=2, threads=max(1, args.threads // 2)),
        }
        best = {}
        for repeat in range(args.repeats):
            for i, (name, cfg) in enumerate(variants.items()):
                x, stats = run(model, data, n, cfg, f"{tmp}/cache-{repeat}-{i}")  # a fresh cache: nothing is reused
                if name not in best or stats.seconds < best[name][1].seconds:
                    best[name] = (x, stats)
        ray.shutdown()
    what = args.model or f"random-init Llama {args.width} wide, {args.layers} blocks"
    print(f"{what}; {n} OpinionQA questions, {n_points} points; prefix sharing on; best of {args.repeats}")
    print(f"{'variant':26s} {'ranks x threads':>15s} {'points/s':>9s} {'vs tp=1':>8s} {'param MB per rank':>20s}")
    baseline = best["tp=1 (hf)"][1].seconds
    for name, cfg in variants.items():
        stats = best[name][1]
        per_rank = "/".join(f"{r['param_bytes'] / 2**20:.0f}" for r in stats.extra["replica"])
        print(f"{name:26s} {f'{cfg.tp} x {cfg.threads}':>15s} {n_points / stats.seconds:9.2f} "
              f"{baseline / stats.seconds:7.2f}x {per_rank:>20s}")
    x1, x2 = best["tp=1 (hf)"][0], best["tp=2 (deepspeed AutoTP)"][0]
    print(f"max |tp=2 - tp=1| over all embeddings: {np.abs(x2 - x1).max():.2e} "
          f"({np.abs(x2 - x1).max() / np.abs(x1).max():.1e} of their largest value {np.abs(x1).max():.3g})")


if __name__ == "__main__":
    main()
