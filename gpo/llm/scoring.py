"""Option distributions from a causal LM's next-token probabilities after "Answer:".

A letter may be one token with or without a leading space ("B" / " B", and some tokenizers
have only one of the two): both spellings count. The letters' probabilities are renormalised
over the question's options; a letter with no single-token spelling gets a small floor
probability instead of a raw logit (the reference implementation's bug).
"""

from __future__ import annotations

import numpy as np
import torch

from gpo.prompts import letter

FLOOR = 1e-6


def letter_token_ids(tokenizer, n: int) -> list[list[int]]:
    """For each of the first n letters, the ids of its single-token spellings."""
    out = []
    for i in range(n):
        ids = set()
        for spelling in (letter(i), " " + letter(i)):
            tokens = tokenizer(spelling, add_special_tokens=False)["input_ids"]
            if len(tokens) == 1:
                ids.add(tokens[0])
        out.append(sorted(ids))
    return out


def option_probs(logits: torch.Tensor, letter_ids: list[list[int]], n_options: torch.Tensor) -> torch.Tensor:
    """(B, V) next-token logits -> (B, O) option probabilities (0 beyond each row's options)."""
    probs = logits.float().softmax(-1)
    O = len(letter_ids)
    columns = [probs[:, ids].sum(-1) if ids else torch.zeros(len(probs), device=probs.device) for ids in letter_ids]
    p = torch.stack(columns, 1).clamp_min(FLOOR)
    p = p * (torch.arange(O, device=p.device)[None] < n_options[:, None])
    return p / p.sum(1, keepdim=True)


def last_logits(model, tokenizer, prompts: list[str], max_tokens: int):
    """Next-token logits after each prompt (left padding; long prompts keep their end)."""
    tokenizer.padding_side, tokenizer.truncation_side = "left", "left"
    enc = tokenizer(prompts, return_tensors="pt", padding=True, truncation=True, max_length=max_tokens).to(model.device)
    return model(**enc).logits[:, -1]


@torch.no_grad()
def score(model, tokenizer, prompts: list[str], n_options: list[int], batch_size: int = 8, max_tokens: int = 1024) -> list[np.ndarray]:
    """Each prompt's option distribution (a list of arrays of length n_options[i])."""
    letter_ids = letter_token_ids(tokenizer, max(n_options))
    out = []
    for s in range(0, len(prompts), batch_size):
        logits = last_logits(model, tokenizer, prompts[s:s + batch_size], max_tokens)
        n = torch.tensor(n_options[s:s + batch_size], device=logits.device)
        p = option_probs(logits, letter_ids, n).cpu().numpy()
        out += [row[:k] for row, k in zip(p, n_options[s:s + batch_size])]
    return out
