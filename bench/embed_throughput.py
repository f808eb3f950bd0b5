"""Embedding extraction throughput: the project's extractor vs a plain transformers loop.

The baseline is the straightforward way: one process, the same model and threads, batches of
a fixed number of full prompts in data order, padded to each batch's longest. Against it, in
one run on the same OpinionQA questions:
  1. the in-process extractor (length-bucketed token-budget batches; for causal LMs also
     prefix sharing), on a random-init Llama-style causal LM and on the real MiniLM encoder;
  2. the Ray path with 1 actor at the same threads (Ray overhead), and 2 actors x 1 thread
     vs 1 actor x 2 threads. Ray timings exclude starting the local cluster and loading the
     replicas (once per job), and include dispatch, transfer and writing the shards.
Every variant's embeddings are checked against the baseline's before its speed counts.

    python bench/embed_throughput.py [--questions 120] [--threads 2]
    python bench/embed_throughput.py --models qwen2.5-coder-0.5b --questions 24 --bf16 --skip-ray   # a real causal LM

`--models` names the models of part 1 (`llama-random`, `minilm`, or any `embed.model`: a GGUF in
the models folder, a path, a hub id); `--bf16` also times the extractor in bfloat16 and prints
its largest difference from float32. Speeds are points/s and prompt tokens/s: the tokens of every
full prompt, whichever way they were run (prefix sharing runs fewer).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace

import numpy as np
import torch
from transformers import LlamaConfig, LlamaModel

from gpo.config import EmbedConfig, load_config
from gpo.embed import distributed
from gpo.embed.cache import EmbeddingCache
from gpo.embed.models import Embedder
from gpo.inputs import load_survey
from gpo.prompts import gpo_prompt


@torch.inference_mode()
def plain_loop(tokenizer, net, questions, batch_size: int, max_tokens: int) -> np.ndarray:
    texts = [p + s for q, o in questions for p, suffixes in [gpo_prompt(q, o, tokenizer)] for s in suffixes]
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i : i + batch_size], padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
        hidden = net(**enc).last_hidden_state
        mask = enc["attention_mask"][..., None].float()
        out.append(((hidden * mask).sum(1) / mask.sum(1)).numpy())
    return np.concatenate(out)


def timed(fn, repeats: int):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def random_llama(vocab: int):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab, hidden_size=512, intermediate_size=1376, num_hidden_layers=8,
                         num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=2048)
    return LlamaModel(config).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=120)
    parser.add_argument("--ray-questions", type=int, default=668, help="a longer job for the Ray timings")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32, help="prompts per batch of the plain loop")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--models", nargs="+", default=["llama-random", "minilm"])
    parser.add_argument("--bf16", action="store_true", help="also time the extractor in bfloat16")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data, _, _ = load_survey(load_config("configs/demo.yaml"))
    questions = list(zip(data.questions, data.options))[: args.questions]
    n_points = sum(len(o) for _, o in questions)
    print(f"{len(questions)} OpinionQA questions, {n_points} points, {args.threads} threads, best of {args.repeats}")

    minilm = Embedder(EmbedConfig(model="minilm", backend="hf"))
    for name in args.models:
        if name == "llama-random":
            name, embedder = "random-init Llama (512d, 8 layers), causal", Embedder(
                EmbedConfig(model="minilm", backend="hf"), tokenizer=minilm.tokenizer, net=random_llama(len(minilm.tokenizer)))
        else:
            embedder = minilm if name == "minilm" else Embedder(EmbedConfig(model=name, backend="hf"))
        base_s, base = timed(lambda: plain_loop(embedder.tokenizer, embedder.net, questions, args.batch_size, 512), args.repeats)
        ours_s, (ours, stats) = timed(lambda: embedder.embed(questions), args.repeats)
        # fp32 sums in another order: relative to the embeddings' scale (a causal LM's reach the hundreds)
        error = np.abs(ours - base).max() / np.abs(base).max()
        assert error < 1e-4, f"{name}: embeddings differ from the plain loop ({error:.1e} of their largest value)"
        saved = 1 - stats.tokens / stats.full_tokens
        print(f"{name}: plain loop {n_points / base_s:.1f} pts/s ({stats.full_tokens / base_s:.0f} prompt tokens/s), "
              f"extractor {n_points / ours_s:.1f} pts/s ({stats.full_tokens / ours_s:.0f} prompt tokens/s) -> {base_s / ours_s:.2f}x "
              f"(prefix sharing saved {saved:.0%} of tokens; largest difference {error:.1e} of the largest value)")
        if args.bf16 and name != "minilm":
            half = Embedder(EmbedConfig(model=name, backend="hf", dtype="bfloat16"))
            half_s, (half_x, _) = timed(lambda: half.embed(questions), args.repeats)
            cosine = (half_x * ours).sum(1) / np.linalg.norm(half_x, axis=1) / np.linalg.norm(ours, axis=1)
            print(f"{name}, bfloat16 extractor: {n_points / half_s:.1f} pts/s -> {ours_s / half_s:.2f}x float32's; "
                  f"largest difference {np.abs(half_x - ours).max() / np.abs(ours).max():.1e} of the largest value, "
                  f"lowest cosine to float32 {cosine.min():.5f}")

    if args.skip_ray:
        return
    ray = distributed.init_ray("local")  # a private Ray, not one another process left running
    questions = list(zip(data.questions, data.options))[: args.ray_questions]
    n_points = sum(len(o) for _, o in questions)
    cfg = EmbedConfig(model="minilm", backend="hf", shard_size=32)
    shards_of = lambda root: EmbeddingCache.open(root, {"bench": time.time()}, data.qids[: len(questions)],  # noqa: E731
                                                 data.n_options[: len(questions)].tolist(), cfg.shard_size)
    base_s, _ = timed(lambda: minilm.embed(questions), args.repeats)
    plain_s, _ = timed(lambda: plain_loop(minilm.tokenizer, minilm.net, questions, args.batch_size, 512), args.repeats)
    print(f"Ray section: {len(questions)} questions, {n_points} points, MiniLM")

    def ray_run(workers: int, threads: int) -> float:
        walls = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as root:
                cache = shards_of(root)
                walls.append(distributed.extract(cache, cache.shards, questions, replace(cfg, workers=workers, threads=threads)).seconds)
        return min(walls)

    one = ray_run(1, args.threads)
    print(f"Ray, 1 actor x {args.threads} threads: {n_points / one:.1f} pts/s vs in-process {n_points / base_s:.1f} pts/s "
          f"-> Ray is {one / base_s - 1:+.1%} slower")
    print(f"Ray, 1 actor x {args.threads} threads vs the plain loop ({n_points / plain_s:.1f} pts/s): "
          f"{one / plain_s - 1:+.1%} wall time")
    if args.threads >= 2:
        two = ray_run(2, args.threads // 2)
        print(f"Ray, 2 actors x {args.threads // 2} thread(s): {n_points / two:.1f} pts/s vs 1 actor x {args.threads}: "
              f"{n_points / one:.1f} pts/s -> {one / two:.2f}x")
    ray.shutdown()


if __name__ == "__main__":
    main()
