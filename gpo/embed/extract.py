"""Embeddings of GPO prompts: the mean of the last hidden layer over each prompt's tokens (the
paper's pooling), or its last token's state (`pooling` "last", what a causal LM has read by then).

A prompt is a question's prefix plus one option's suffix (prompts.py). Two ways to run it:
- `embed_full`: every prompt whole (encoders, whose states depend on the whole text);
- `embed_shared_prefix`: for causal LMs, whose prefix states do not depend on what follows:
  each question's prefix runs once, packed in one row with all its options' suffixes under
  a mask that lets a suffix see only the prefix and itself, and the mean pools prefix and
  suffix states. Same numbers as `embed_full` (tests: max difference < 1e-4 in fp32), and
  no copies of a key/value cache per option.
Batches are length-bucketed (sorted by length, padded only to the batch's longest) and
sized by a token budget. A prompt longer than `max_tokens` loses the end of its prefix,
never its option.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from gpo.prompts import TEMPLATES


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
def embed_full(net, questions: list[QuestionTokens], pad_id: int, batch_tokens: int, device, progress=None,
               pooling: str = "mean"):
    """(P, d) embeddings, every prompt run whole, and the run's Stats."""
    seqs = [q.prefix + s for q in questions for s in q.suffixes]
    out, start = None, time.perf_counter()
    for batch in token_batches([len(s) for s in seqs], batch_tokens):
        ids, mask = padded([seqs[i] for i in batch], pad_id, device)
        hidden = net(input_ids=ids, attention_mask=mask).last_hidden_state
        if pooling == "last":
            vectors = hidden.float()[torch.arange(len(batch), device=hidden.device), mask.sum(1) - 1].cpu().numpy()
        else:
            vectors = (masked_sum(hidden, mask) / mask.sum(1, keepdim=True)).cpu().numpy()
        if out is None:
            out = np.empty((len(seqs), vectors.shape[1]), dtype=np.float32)
        out[batch] = vectors
        if progress is not None:
            progress.update(len(batch))
    n_tokens = sum(len(s) for s in seqs)
    return out, Stats(len(seqs), n_tokens, n_tokens, time.perf_counter() - start)


def packed_question(q: QuestionTokens) -> tuple[list[int], list[int], list[int]]:
    """One row for a whole question: its prefix, then every option's suffix in turn.

    Returns token ids, positions (each suffix continues right after the prefix) and the
    segment of each token (-1 for the prefix, o for option o's suffix).
    """
    ids, positions, segment = list(q.prefix), list(range(len(q.prefix))), [-1] * len(q.prefix)
    for o, suffix in enumerate(q.suffixes):
        ids += suffix
        positions += range(len(q.prefix), len(q.prefix) + len(suffix))
        segment += [o] * len(suffix)
    return ids, positions, segment


@torch.inference_mode()
def embed_shared_prefix(net, questions: list[QuestionTokens], pad_id: int, batch_tokens: int, device, progress=None,
                        pooling: str = "mean"):
    """(P, d) embeddings of a causal LM, each question's prefix run once (see module doc).

    A question is one packed row (prefix, then all its options' suffixes) under a custom
    attention mask: every token sees the prefix tokens before it and the earlier tokens of
    its own suffix, never another option's. Positions restart after the prefix for every
    suffix, so each option's states equal those of its own full prompt.
    """
    starts = np.concatenate([[0], np.cumsum([len(q.suffixes) for q in questions])])
    packed = [packed_question(q) for q in questions]
    out, start = None, time.perf_counter()
    for batch in token_batches([len(p[0]) for p in packed], batch_tokens):
        rows = [packed[i] for i in batch]
        ids, valid = padded([r[0] for r in rows], pad_id, device)
        positions, _ = padded([r[1] for r in rows], 0, device)
        segment, _ = padded([r[2] for r in rows], -2, device)  # -2: padding
        causal = torch.ones(ids.shape[1], ids.shape[1], dtype=torch.bool, device=device).tril()
        same = (segment[:, None, :] == -1) | (segment[:, None, :] == segment[:, :, None])  # (B, query, key)
        allowed = (causal & same & valid[:, None, :].bool()) | torch.eye(ids.shape[1], dtype=torch.bool, device=device)
        dtype = next(net.parameters()).dtype
        mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)
        hidden = net(input_ids=ids, attention_mask=mask[:, None], position_ids=positions).last_hidden_state.float()
        n_opt = max(len(questions[i].suffixes) for i in batch)
        in_prefix = (segment == -1).float()
        prefix_sum = (hidden * in_prefix[..., None]).sum(1)  # (B, d)
        slot = torch.where(segment >= 0, segment + n_opt * torch.arange(len(rows), device=device)[:, None], len(rows) * n_opt)
        option_sum = torch.zeros(len(rows) * n_opt + 1, hidden.shape[-1], device=device)
        option_sum = option_sum.index_add(0, slot.reshape(-1), hidden.reshape(-1, hidden.shape[-1]))[:-1]
        option_len = torch.zeros(len(rows) * n_opt + 1, device=device).index_add(
            0, slot.reshape(-1), torch.ones(slot.numel(), device=device))[:-1]
        prefix_len = in_prefix.sum(1)
        owner = torch.arange(len(rows), device=device).repeat_interleave(n_opt)
        vectors = (prefix_sum[owner] + option_sum) / (prefix_len[owner] + option_len)[:, None]
        if pooling == "last":  # each option's last suffix token (flat index into the batch's tokens)
            flat = torch.arange(slot.numel(), device=device).reshape(slot.shape)
            last = torch.full((len(rows) * n_opt + 1,), -1, device=device).scatter_reduce(
                0, slot.reshape(-1), flat.reshape(-1), "amax")[:-1]
            vectors = hidden.reshape(-1, hidden.shape[-1])[last.clamp_min(0)]
        keep = torch.cat([torch.arange(len(questions[i].suffixes)) + n_opt * b for b, i in enumerate(batch)])
        vectors = vectors[keep.to(device)].cpu().numpy()
        if out is None:
            out = np.empty((int(starts[-1]), vectors.shape[1]), dtype=np.float32)
        points = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in batch])
        out[points] = vectors
        if progress is not None:
            progress.update(len(points))
    tokens = sum(len(p[0]) for p in packed)
    full = sum(len(q.prefix) * len(q.suffixes) + sum(len(s) for s in q.suffixes) for q in questions)
    return out, Stats(int(starts[-1]), tokens, full, time.perf_counter() - start)
