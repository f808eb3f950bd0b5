"""Embeddings of GPO prompts: the mean of the last hidden layer over each prompt's tokens.

A prompt is a question's prefix plus one option's suffix (prompts.py). Two ways to run it:
- `embed_full`: every prompt whole (encoders, whose states depend on the whole text);
- `embed_shared_prefix`: for causal LMs, whose prefix states do not depend on what follows:
  each question's prefix runs once, every option's suffix continues from its key/value
  cache with positions after the prefix, and the mean pools prefix and suffix states. Same
  numbers as `embed_full` (tests: max difference < 1e-4 in fp32), fewer tokens.
Batches are length-bucketed (sorted by length, padded only to the batch's longest) and
sized by a token budget. A prompt longer than `max_tokens` loses the end of its prefix,
never its option.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import modeling_outputs

from gpo.embed.prompts import TEMPLATES

# transformers 5.24 renamed the key/value cache `past_key_values` -> `cache` (argument and output)
CACHE = "cache" if "cache" in modeling_outputs.BaseModelOutputWithPast.__dataclass_fields__ else "past_key_values"


@dataclass
class QuestionTokens:
    prefix: list[int]  # shared by the question's options, leading special tokens included
    suffixes: list[list[int]]  # one per option, trailing special tokens included


@dataclass
class Stats:
    points: int = 0
    tokens: int = 0  # tokens run through the model
    full_tokens: int = 0  # tokens a full recomputation of every prompt would run
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def __add__(self, other: "Stats") -> "Stats":
        return Stats(self.points + other.points, self.tokens + other.tokens,
                     self.full_tokens + other.full_tokens, self.seconds + other.seconds)

    def summary(self, wall: float | None = None) -> str:
        wall = wall or self.seconds or 1e-9
        saved = 1 - self.tokens / max(self.full_tokens, 1)
        return (f"{self.points} points in {wall:.1f}s: {self.points / wall:.1f} points/s, "
                f"{self.tokens / wall:.0f} tokens/s; prefix sharing saved {saved:.1%} of {self.full_tokens} tokens")


def special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a text ([CLS] .. [SEP], <s> ..)."""
    inner = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for i in range(len(full) - len(inner) + 1):
        if full[i : i + len(inner)] == inner:
            return full[:i], full[i + len(inner):]
    return [], []


def tokenize(tokenizer, questions: list[tuple[str, list[str]]], template: str, max_tokens: int) -> list[QuestionTokens]:
    prompt = TEMPLATES[template]
    chat = bool(getattr(tokenizer, "chat_template", None))
    head, tail = ([], []) if chat else special_tokens(tokenizer)  # a chat template writes its own
    out = []
    for question, options in questions:
        prefix_text, suffix_texts = prompt(question, options, tokenizer)
        suffixes = [tokenizer(s, add_special_tokens=False)["input_ids"] + tail for s in suffix_texts]
        prefix = head + tokenizer(prefix_text, add_special_tokens=False)["input_ids"]
        keep = max(len(head), max_tokens - max(len(s) for s in suffixes))
        out.append(QuestionTokens(prefix[:keep], [s[: max_tokens - min(keep, len(prefix))] for s in suffixes]))
    return out


def token_batches(costs: list[int], batch_tokens: int) -> list[np.ndarray]:
    """Indices sorted by cost and grouped so that (batch size x largest cost) <= batch_tokens."""
    order = np.argsort(costs, kind="stable")
    batches, current, largest = [], [], 0
    for i in order:
        if current and max(largest, costs[i]) * (len(current) + 1) > batch_tokens:
            batches.append(np.array(current))
            current, largest = [], 0
        current.append(i)
        largest = max(largest, costs[i])
    if current:
        batches.append(np.array(current))
    return batches


def padded(seqs: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (n, longest) ids and their 0/1 mask."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):  # rows of one batch, filling a padded tensor
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids.to(device), mask.to(device)


def masked_sum(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (hidden.float() * mask[..., None].float()).sum(1)


@torch.inference_mode()
def embed_full(net, questions: list[QuestionTokens], pad_id: int, batch_tokens: int, device, progress=None):
    """(P, d) embeddings, every prompt run whole, and the run's Stats."""
    seqs = [q.prefix + s for q in questions for s in q.suffixes]
    out, start = None, time.perf_counter()
    for batch in token_batches([len(s) for s in seqs], batch_tokens):
        ids, mask = padded([seqs[i] for i in batch], pad_id, device)
        hidden = net(input_ids=ids, attention_mask=mask).last_hidden_state
        vectors = (masked_sum(hidden, mask) / mask.sum(1, keepdim=True)).cpu().numpy()
        if out is None:
            out = np.empty((len(seqs), vectors.shape[1]), dtype=np.float32)
        out[batch] = vectors
        if progress is not None:
            progress.update(len(batch))
    n_tokens = sum(len(s) for s in seqs)
    return out, Stats(len(seqs), n_tokens, n_tokens, time.perf_counter() - start)


@torch.inference_mode()
def embed_shared_prefix(net, questions: list[QuestionTokens], pad_id: int, batch_tokens: int, device, progress=None):
    """(P, d) embeddings of a causal LM, each question's prefix run once (see module doc)."""
    starts = np.concatenate([[0], np.cumsum([len(q.suffixes) for q in questions])])
    out, start = None, time.perf_counter()
    # a question costs its prefix plus its options' suffixes
    costs = [len(q.prefix) + len(q.suffixes) * max(len(s) for s in q.suffixes) for q in questions]
    for batch in token_batches(costs, batch_tokens):
        qs = [questions[i] for i in batch]
        prefix_ids, prefix_mask = padded([q.prefix for q in qs], pad_id, device)
        first = net(input_ids=prefix_ids, attention_mask=prefix_mask, use_cache=True)
        prefix_sum = masked_sum(first.last_hidden_state, prefix_mask)  # (B, d)
        prefix_len = prefix_mask.sum(1)  # (B,)
        owner = torch.repeat_interleave(torch.arange(len(qs), device=device),
                                        torch.tensor([len(q.suffixes) for q in qs], device=device))
        cache = getattr(first, CACHE)
        cache.batch_select_indices(owner)  # one copy of its question's prefix per option
        suffix_ids, suffix_mask = padded([s for q in qs for s in q.suffixes], pad_id, device)
        positions = prefix_len[owner][:, None] + torch.arange(suffix_ids.shape[1], device=device)
        second = net(input_ids=suffix_ids, attention_mask=torch.cat([prefix_mask[owner], suffix_mask], 1),
                     position_ids=positions, use_cache=False, **{CACHE: cache})
        total = prefix_sum[owner] + masked_sum(second.last_hidden_state, suffix_mask)
        vectors = (total / (prefix_len[owner] + suffix_mask.sum(1))[:, None]).cpu().numpy()
        if out is None:
            out = np.empty((int(starts[-1]), vectors.shape[1]), dtype=np.float32)
        rows = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in batch])
        out[rows] = vectors
        if progress is not None:
            progress.update(len(rows))
    tokens = sum(len(q.prefix) + sum(len(s) for s in q.suffixes) for q in questions)
    full = sum(len(q.prefix) * len(q.suffixes) + sum(len(s) for s in q.suffixes) for q in questions)
    return out, Stats(int(starts[-1]), tokens, full, time.perf_counter() - start)
