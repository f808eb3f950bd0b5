"""Sharded extraction on Ray: one model replica per actor, a cache shard per task.

The same code runs on a laptop (a local Ray started here) and on a cluster
(`embed.ray_address: auto`). Each actor holds one replica (one GPU each, or `embed.tp`
GPUs for a tensor-parallel model; CPU threads otherwise) and embeds whole shards: a shard
is a run of consecutive questions with all their options. Vectors come back to the driver,
which writes each shard atomically as its result arrives, so the cache needs no shared file
system and every point is written exactly once. An actor that dies is restarted by Ray and
its unfinished tasks are retried (`max_restarts`, `max_task_retries`); a killed driver
loses nothing already written, and a rerun computes only the missing shards.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np

from gpo.embed.cache import EmbeddingCache, Shard
from gpo.embed.extract import Stats
from gpo.progress import progress

log = logging.getLogger(__name__)

IN_FLIGHT_PER_WORKER = 2  # keeps each replica busy while the driver writes results


def init_ray(address: str = ""):
    import ray

    if not ray.is_initialized():
        ray.init(address=address or None, include_dashboard=False, logging_level=logging.WARNING,
                 runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}})
    return ray


class EmbedWorker:
    """A Ray actor holding one model replica."""

    def __init__(self, cfg, threads: int):
        import ray
        import torch

        from gpo.embed.models import Embedder

        torch.set_num_threads(threads)
        self.embedder = Embedder(cfg, "cuda" if ray.get_gpu_ids() else "cpu")

    def pid(self) -> int:
        return os.getpid()

    def embed(self, questions: list[tuple[str, list[str]]]) -> tuple[np.ndarray, Stats]:
        return self.embedder.embed(questions)


def extract(cache: EmbeddingCache, shards: list[Shard], questions, cfg, on_shard_done=None) -> Stats:
    """Embed `shards` with `cfg.workers` Ray actors and write them into `cache`.

    questions[q] is (text, options) of question q. on_shard_done(n_done, pids) is called
    after each shard is written, with the actors' process ids (tests use it to kill an actor
    or the driver mid-run).
    """
    ray = init_ray(cfg.ray_address)
    gpus = ray.cluster_resources().get("GPU", 0)
    per_worker_gpus = cfg.tp if gpus else 0
    threads = cfg.threads or max(1, int(ray.cluster_resources().get("CPU", 1)) // cfg.workers)
    actor = ray.remote(EmbedWorker).options(num_cpus=0 if per_worker_gpus else threads, num_gpus=per_worker_gpus,
                                            max_restarts=-1, max_task_retries=-1)
    workers = [actor.remote(cfg, threads) for _ in range(cfg.workers)]
    try:
        pids = ray.get([w.pid.remote() for w in workers])  # also waits for the replicas to load
        start = time.perf_counter()
        total = _dispatch(ray, workers, pids, cache, shards, questions, cfg, on_shard_done)
    finally:
        for worker in workers:
            ray.kill(worker)
    wall = time.perf_counter() - start
    log.info("extraction: %s", total.summary(wall))
    return Stats(total.points, total.tokens, total.full_tokens, wall)


def _dispatch(ray, workers, pids, cache, shards, questions, cfg, on_shard_done) -> Stats:
    """Keep every actor busy with shards; write each result as it arrives."""
    pending = list(shards)
    running = {}  # object ref -> (shard, worker)
    total, done = Stats(), 0

    def submit(worker):
        shard = pending.pop(0)
        running[worker.embed.remote([questions[q] for q in shard.questions])] = (shard, worker)

    for worker in workers:
        for _ in range(IN_FLIGHT_PER_WORKER):
            if pending:
                submit(worker)
    with progress(total=sum(len(s.points) for s in shards), desc=f"embed {cfg.model} x{cfg.workers}", unit="pt") as bar:
        while running:
            [ref], _ = ray.wait(list(running), num_returns=1)
            shard, worker = running.pop(ref)
            vectors, stats = ray.get(ref)
            cache.write(shard, vectors)
            total, done = total + stats, done + 1
            bar.update(len(shard.points))
            if pending:
                submit(worker)
            if on_shard_done is not None:
                on_shard_done(done, pids)
    return total
