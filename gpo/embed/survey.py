"""Embed every point of a survey through the cache: only missing shards touch a model.

`embed.workers` > 0 shards the work over Ray replicas (distributed.py), each one actor or
`embed.tp` tensor-parallel actors (replica.py); 0 runs one replica in this process. All
write the same cache, so any can resume another's run.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from gpo.config import in_project
from gpo.data.survey import SurveyData
from gpo.device import pick_device
from gpo.embed import models
from gpo.embed.cache import EmbeddingCache
from gpo.embed.extract import Stats
from gpo.embed.replica import check_config
from gpo.lock import exclusive
from gpo.progress import progress
from gpo.prompts import template_digest

log = logging.getLogger(__name__)


def open_cache(data: SurveyData, cfg) -> EmbeddingCache:
    identity = {
        "model": cfg.model,
        "layers": cfg.layers,
        "model_digest": models.digest(cfg.model, cfg.layers),
        "template": cfg.template,
        "template_digest": template_digest(cfg.template),
        "max_tokens": cfg.max_tokens,
        "dtype": cfg.dtype,
        "data_digest": data.digest(),
        **({"pooling": cfg.pooling} if cfg.pooling != "mean" else {}),  # the default's identity names no pooling
    }
    return EmbeddingCache.open(in_project(cfg.cache_dir), identity, data.qids, data.n_options.tolist(), cfg.shard_size)


def embed_survey(data: SurveyData, cfg, on_shard_done=None) -> np.ndarray:
    """(P, d) embeddings of every (question, option) of `data` under embed config `cfg`."""
    check_config(cfg)
    cache = open_cache(data, cfg)
    if cache.missing():
        with exclusive(cache.root, "this embedding cache"):
            todo = cache.missing()  # another process may have written some since the check above
            questions = list(zip(data.questions, data.options))
            log.info("embedding %d points of %d questions with %s (%d of %d shards cached)",
                     sum(len(s.points) for s in todo), sum(len(s.questions) for s in todo), cfg.model,
                     len(cache.shards) - len(todo), len(cache.shards))
            if cfg.workers > 0:
                from gpo.embed.distributed import extract

                extract(cache, todo, questions, cfg, on_shard_done)
            else:
                embed_here(cache, todo, questions, cfg)
    return cache.load()


def embed_here(cache: EmbeddingCache, shards, questions, cfg) -> Stats:
    embedder = models.Embedder(cfg, pick_device(cfg.device))
    total, start = Stats(), time.perf_counter()
    with progress(total=sum(len(s.points) for s in shards), desc=f"embed {cfg.model}", unit="pt") as bar:
        for shard in shards:
            vectors, stats = embedder.embed([questions[q] for q in shard.questions], bar)
            cache.write(shard, vectors)
            total += stats
    log.info("extraction: %s", total.summary(time.perf_counter() - start))
    return total
