"""Embeddings of GPO prompts: the mean of the last hidden layer over non-padding tokens.

Prompts are tokenised as prefix + suffix (prompts.py); a prompt longer than `max_tokens`
loses the end of its prefix, never its option. Batches are length-bucketed
(sorted by length, padded only to the batch's longest) and sized by a token budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gpo.embed.prompts import TEMPLATES


@dataclass
class Encoded:
    ids: list[list[int]]  # one token list per point, special tokens included
    n_prefix: list[int]  # tokens of the shared prefix in each


def special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a text ([CLS] .. [SEP], <s> ..)."""
    inner = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for i in range(len(full) - len(inner) + 1):
        if full[i : i + len(inner)] == inner:
            return full[:i], full[i + len(inner):]
    return [], []


def encode(tokenizer, questions: list[tuple[str, list[str]]], template: str, max_tokens: int) -> Encoded:
    prompt = TEMPLATES[template]
    chat = bool(getattr(tokenizer, "chat_template", None))
    head, tail = ([], []) if chat else special_tokens(tokenizer)  # a chat template writes its own
    ids, n_prefix = [], []
    for question, options in questions:
        prefix, suffixes = prompt(question, options, tokenizer)
        p = head + tokenizer(prefix, add_special_tokens=False)["input_ids"]
        for suffix in suffixes:
            s = tokenizer(suffix, add_special_tokens=False)["input_ids"] + tail
            keep = max(len(head), max_tokens - len(s))
            ids.append((p[:keep] + s)[:max_tokens])
            n_prefix.append(min(len(p), keep))
    return Encoded(ids, n_prefix)


def token_batches(lengths: list[int], batch_tokens: int) -> list[np.ndarray]:
    """Indices grouped so that (batch size x longest length) stays within `batch_tokens`."""
    order = np.argsort(lengths, kind="stable")
    batches, current, longest = [], [], 0
    for i in order:
        longest_if = max(longest, lengths[i])
        if current and longest_if * (len(current) + 1) > batch_tokens:
            batches.append(np.array(current))
            current, longest_if = [], lengths[i]
        current.append(i)
        longest = longest_if
    if current:
        batches.append(np.array(current))
    return batches


@torch.inference_mode()
def mean_pooled(net, ids: list[list[int]], pad_id: int, device) -> torch.Tensor:
    """(n, d) float32 mean of the last hidden layer over each sequence's tokens."""
    width = max(len(s) for s in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):  # rows of a batch, not points: filling a padded tensor
        input_ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    input_ids, mask = input_ids.to(device), mask.to(device)
    hidden = net(input_ids=input_ids, attention_mask=mask).last_hidden_state
    m = mask[..., None].to(hidden.dtype)
    return ((hidden * m).sum(1) / m.sum(1)).float().cpu()


def embed_encoded(net, tokenizer, encoded: Encoded, batch_tokens: int, device, progress=None) -> np.ndarray:
    lengths = [len(s) for s in encoded.ids]
    out = None
    for batch in token_batches(lengths, batch_tokens):
        vectors = mean_pooled(net, [encoded.ids[i] for i in batch], tokenizer.pad_token_id, device)
        if out is None:
            out = np.empty((len(lengths), vectors.shape[1]), dtype=np.float32)
        out[batch] = vectors.numpy()
        if progress is not None:
            progress.update(len(batch))
    return out
