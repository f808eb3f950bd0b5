"""Embed every point of a survey through the cache: only missing shards touch the model."""

from __future__ import annotations

import logging
import time

import numpy as np
from tqdm.auto import tqdm

from gpo.data.survey import SurveyData
from gpo.embed import models
from gpo.embed.cache import EmbeddingCache
from gpo.embed.extract import embed_encoded, encode
from gpo.embed.prompts import template_digest

log = logging.getLogger(__name__)


def pick_device(device: str) -> str:
    import torch

    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


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
    }
    return EmbeddingCache.open(cfg.cache_dir, identity, data.qids, data.n_options.tolist())


def embed_survey(data: SurveyData, cfg) -> np.ndarray:
    """(P, d) embeddings of every (question, option) of `data` under embed config `cfg`."""
    cache = open_cache(data, cfg)
    todo = cache.missing()
    if todo:
        device = pick_device(cfg.device)
        tokenizer, net = models.load(cfg.model, device, cfg.dtype, cfg.layers)
        n_points = sum(len(s.points) for s in todo)
        log.info("embedding %d points of %d questions with %s on %s (%d of %d shards cached)",
                 n_points, sum(len(s.questions) for s in todo), cfg.model, device,
                 len(cache.shards) - len(todo), len(cache.shards))
        start = time.perf_counter()
        with tqdm(total=n_points, desc=f"embed {cfg.model}", unit="pt") as bar:
            for shard in todo:
                questions = [(data.questions[q], data.options[q]) for q in shard.questions]
                encoded = encode(tokenizer, questions, cfg.template, cfg.max_tokens)
                cache.write(shard, embed_encoded(net, tokenizer, encoded, cfg.batch_tokens, device, bar))
        log.info("embedded %d points in %.1fs", n_points, time.perf_counter() - start)
    return cache.load()
