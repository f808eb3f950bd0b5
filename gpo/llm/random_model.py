"""A random-init GPT-2-style causal LM with a byte-level BPE tokenizer trained on survey text.

No causal LM weights are available offline here (../shared/MODELS.md): the LLM baselines'
code paths are tested and timed on this model. It is meaningful for correctness and compute,
never for alignment quality.
"""

from __future__ import annotations

from pathlib import Path


def build(path: str | Path, texts: list[str], n_embd: int = 32, n_layer: int = 2, n_head: int = 2, seed: int = 0) -> str:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    corpus = list(texts) + ["Answer: A B C D E. A. B. C. D. E. 25% 75%"] * 20  # letters alone and after a space
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=n_embd, n_layer=n_layer, n_head=n_head, n_positions=4096))
    tokenizer.save_pretrained(path)
    model.save_pretrained(path)
    return str(path)
