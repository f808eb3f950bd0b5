"""Base models by name: short names resolved in the models folder, GGUF files through the gguf
extra, the first `embed.layers` blocks of a causal LM as a real sub-model, mean pooling. Random
small configs always; the smallest real GGUF (SmolLM2-135M) when it is in the models folder."""

import importlib.util

import numpy as np
import pytest
import torch
from transformers import AutoModel

from gpo.config import EmbedConfig
from gpo.embed.models import MODEL_FILES, Embedder, count_parameters, locate, models_dir
from gpo.errors import GPOError
from gpo.llm.random_model import build

QUESTIONS = [("Is it safe where you live?", ["Very safe", "Somewhat safe", "Not safe"]), ("Do you vote?", ["Yes", "No"])]


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    texts = [q for q, _ in QUESTIONS] + [o for _, options in QUESTIONS for o in options]
    return build(tmp_path_factory.mktemp("llama") / "llama", texts, n_embd=64, n_layer=3, n_head=4, arch="llama")


def test_a_short_name_is_its_file_in_the_models_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("GPO_MODELS_DIR", str(tmp_path))
    with pytest.raises(GPOError, match=rf"model 'smollm2-135m': {tmp_path}/SmolLM2-135M-Instruct.Q4_1.gguf not found; "
                                       r"put .* in .* \(or set GPO_MODELS_DIR"):
        locate("smollm2-135m")
    (tmp_path / MODEL_FILES["smollm2-135m"]).write_bytes(b"")
    found = locate("smollm2-135m")
    assert (found.path, found.gguf_file) == (str(tmp_path), MODEL_FILES["smollm2-135m"])
    assert found.kwargs == {"gguf_file": MODEL_FILES["smollm2-135m"]}
    assert locate("org/some-model").path == "org/some-model" and locate("org/some-model").file is None  # a hub id
    with pytest.raises(GPOError, match=r"model './nowhere.gguf': no such file or folder"):
        locate("./nowhere.gguf")


def test_a_gguf_file_without_the_gguf_extra_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "m.gguf").write_bytes(b"")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(GPOError, match=r"is a GGUF file, which needs the gguf extra: pip install -e '\.\[gguf\]'"):
        locate(str(tmp_path / "m.gguf"))


def test_the_first_layers_of_a_causal_lm_are_the_full_models_first_layers(llama):
    """embed.layers=k loads a k-block model whose blocks are the full model's first k (then its
    final norm): the same embeddings as the full model with its later blocks cut off by hand."""
    cut = Embedder(EmbedConfig(model=llama, layers=2, backend="hf", prefix_sharing="off"))
    assert cut.net.config.num_hidden_layers == 2 and len(cut.net.layers) == 2
    x, _ = cut.embed(QUESTIONS)
    full = AutoModel.from_pretrained(llama).eval()
    assert len(full.layers) == 3
    full.layers = full.layers[:2]
    by_hand, _ = Embedder(EmbedConfig(model=llama, backend="hf", prefix_sharing="off"), tokenizer=cut.tokenizer, net=full).embed(QUESTIONS)
    assert x.shape == (5, 64) and np.allclose(x, by_hand, atol=1e-5)
    assert count_parameters(llama, 2) < count_parameters(llama)
    with pytest.raises(GPOError, match="model has 3 layers; cannot keep 4"):
        Embedder(EmbedConfig(model=llama, layers=4, backend="hf"))


def test_the_smallest_real_gguf_loads_cut_and_pools():
    if not (models_dir() / MODEL_FILES["smollm2-135m"]).is_file() or importlib.util.find_spec("gguf") is None:
        pytest.skip(f"{MODEL_FILES['smollm2-135m']} is not in {models_dir()} (GPO_MODELS_DIR): nothing is downloaded here")
    cut = Embedder(EmbedConfig(model="smollm2-135m", layers=2, backend="hf"))
    assert cut.causal and cut.net.config.num_hidden_layers == 2 and cut.net.config.hidden_size == 576
    shared, stats = cut.embed(QUESTIONS)
    whole = Embedder(EmbedConfig(model="smollm2-135m", layers=2, backend="hf", prefix_sharing="off"),
                     tokenizer=cut.tokenizer, net=cut.net).embed(QUESTIONS)[0]
    assert shared.shape == (5, 576) and np.isfinite(shared).all() and stats.tokens < stats.full_tokens
    assert np.abs(shared - whole).max() <= 1e-4 * np.abs(whole).max()  # prefix sharing changes nothing
    # DeepSpeed casts the model to embed.dtype, which transformers refuses for a model it still
    # marks quantized though its GGUF weights were de-quantized as it loaded (embed.tp > 1 failed)
    engine = Embedder(EmbedConfig(model="smollm2-135m", layers=2, backend="deepspeed"), tokenizer=cut.tokenizer, net=cut.net)
    assert np.abs(engine.embed(QUESTIONS)[0] - shared).max() <= 1e-4 * np.abs(shared).max()


def test_last_token_pooling_is_each_prompts_last_state_with_or_without_prefix_sharing(llama):
    shared = Embedder(EmbedConfig(model=llama, backend="hf", pooling="last", prefix_sharing="on"))
    whole = Embedder(EmbedConfig(model=llama, backend="hf", pooling="last", prefix_sharing="off"),
                     tokenizer=shared.tokenizer, net=shared.net)
    mean = Embedder(EmbedConfig(model=llama, backend="hf"), tokenizer=shared.tokenizer, net=shared.net)
    (a, _), (b, _), (m, _) = shared.embed(QUESTIONS), whole.embed(QUESTIONS), mean.embed(QUESTIONS)
    assert np.allclose(a, b, atol=1e-5) and not np.allclose(a, m, atol=1e-3)
    from gpo.embed.extract import tokenize

    tokens = tokenize(shared.tokenizer, QUESTIONS[:1], "gpo", 512)[0]
    ids = torch.tensor([tokens.prefix + tokens.suffixes[1]])
    with torch.no_grad():
        assert np.allclose(a[1], shared.net(input_ids=ids).last_hidden_state[0, -1].numpy(), atol=1e-5)
