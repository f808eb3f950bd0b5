"""A random-init causal LM (GPT-2, OPT or Llama style) with a BPE tokenizer trained on survey text.

No causal LM weights are available offline here (../shared/MODELS.md): the LLM baselines' and
the extraction's causal-LM code paths (prefix sharing, DeepSpeed tensor parallelism) are tested
and timed on this model. It is meaningful for correctness and compute, never for alignment quality.
"""

from __future__ import annotations

from pathlib import Path


def tokenizer(texts: list[str]):
    """A byte-level BPE tokenizer (400 tokens) trained on `texts`, with the answer letters."""
    import transformers as hf
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    corpus = list(texts) + ["Answer: A B C D E. A. B. C. D. E. 25% 75%"] * 20  # letters alone and after a space
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return hf.PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def build(path: str | Path, texts: list[str], n_embd: int = 32, n_layer: int = 2, n_head: int = 2, seed: int = 0,
          arch: str = "gpt2") -> str:
    """Write a tokenizer and a random-init model of `arch` ("gpt2", "opt" or "llama") to `path`."""
    import torch
    import transformers as hf

    tok = tokenizer(texts)
    torch.manual_seed(seed)
    vocab = len(tok)
    if arch == "gpt2":
        model = hf.GPT2LMHeadModel(hf.GPT2Config(vocab_size=vocab, n_embd=n_embd, n_layer=n_layer, n_head=n_head, n_positions=4096))
    elif arch == "opt":  # GPT-2's layout with separate q/k/v projections, which DeepSpeed can shard (not GPT-2's)
        model = hf.OPTForCausalLM(hf.OPTConfig(vocab_size=vocab, hidden_size=n_embd, num_hidden_layers=n_layer, ffn_dim=4 * n_embd,
                                               num_attention_heads=n_head, word_embed_proj_dim=n_embd, max_position_embeddings=4096))
    elif arch == "llama":  # Llama's MLP width (8/3 of the model's, rounded up to 64)
        model = hf.LlamaForCausalLM(hf.LlamaConfig(vocab_size=vocab, hidden_size=n_embd, num_hidden_layers=n_layer,
                                                   intermediate_size=-(-8 * n_embd // 3 // 64) * 64, num_attention_heads=n_head,
                                                   num_key_value_heads=n_head, max_position_embeddings=4096))
    else:
        raise ValueError(f"arch: expected gpt2, opt or llama, got {arch!r}")
    tok.save_pretrained(path)
    model.save_pretrained(path)
    return str(path)
