"""Alignment scores between predicted and true answer distributions (pure tensor functions).

Distributions are padded to (N, O): N questions, up to O options, `mask` marks real options.
- Ordinal questions: 1 - W1(p, q; support = ordinal values) / (max - min ordinal), the
  OpinionQA representativeness.
- Unordered questions: 1 - Jensen-Shannon distance (natural log, as scipy's `jensenshannon`).
"""

from __future__ import annotations

import math

import torch


def wasserstein1(p: torch.Tensor, q: torch.Tensor, ordinal: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """W1 between p and q on the support `ordinal` (any order within a row): (N, O) -> (N,)."""
    big = torch.finfo(ordinal.dtype).max
    fill = torch.where(mask, ordinal, -big).amax(-1, keepdim=True)  # padding sorts last, gap 0
    support, order = torch.where(mask, ordinal, fill).sort(-1)
    cdf_gap = (p.gather(-1, order) * mask.gather(-1, order)).cumsum(-1) - (q.gather(-1, order) * mask.gather(-1, order)).cumsum(-1)
    return (cdf_gap[..., :-1].abs() * support.diff(dim=-1)).sum(-1)


def ordinal_alignment(p, q, ordinal, mask) -> torch.Tensor:
    valid = torch.where(mask, ordinal, torch.nan)
    span = valid.nan_to_num(-torch.inf).amax(-1) - valid.nan_to_num(torch.inf).amin(-1)
    return 1.0 - wasserstein1(p, q, ordinal, mask) / span


def js_alignment(p, q, mask) -> torch.Tensor:
    p, q = p * mask, q * mask
    # KL(a || (p+q)/2) with log((p+q)/2) = log(p+q) - ln 2: halving a subnormal share can round
    # it to zero (log 0 where a > 0: an alignment of -inf); p+q >= a never does
    s = p + q
    kl = lambda a: (torch.xlogy(a, a) - torch.xlogy(a, s)).sum(-1) + math.log(2) * a.sum(-1)  # noqa: E731  (0 log 0 = 0)
    return 1.0 - (0.5 * kl(p) + 0.5 * kl(q)).clamp_min(0).sqrt()


def renormalised(p: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """p restricted to `mask` and rescaled to sum to one (a zero row stays zero)."""
    p = p * mask
    return p / p.sum(-1, keepdim=True).clamp_min(torch.finfo(p.dtype).tiny)


def alignment(p, q, ordinal, mask, is_ordinal) -> torch.Tensor:
    """Per-question alignment: ordinal where `is_ordinal` (N,), else Jensen-Shannon.

    An ordinal question may also have options off its scale (ordinal NaN: "Not sure",
    "Don't know"); as in OpinionQA, W1 is taken over the options on the scale, with both
    distributions renormalised over them."""
    on_scale = mask & ~ordinal.isnan()
    safe_ordinal = torch.where(on_scale, ordinal, 0.0)
    w1 = ordinal_alignment(renormalised(p, on_scale), renormalised(q, on_scale), safe_ordinal, on_scale)
    return torch.where(is_ordinal, w1, js_alignment(p, q, mask))


def accuracy(p: torch.Tensor, true: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Whether the most likely option of p is the chosen one (the option where `true` is
    largest, a one-hot answer): (N, O) -> (N,). Ties count as a fraction: 1/t when the
    chosen option is among t options tied for the most likely."""
    p = torch.where(mask, p, -torch.inf)
    top = p == p.amax(-1, keepdim=True)
    chosen = torch.where(mask, true, -torch.inf).argmax(-1, keepdim=True)
    return top.gather(-1, chosen).squeeze(-1) / top.sum(-1).clamp_min(1)


def log_loss(p: torch.Tensor, true: torch.Tensor, mask: torch.Tensor, floor: float = 1e-6) -> torch.Tensor:
    """-log of the probability p gives the chosen option (where `true`, one-hot, is largest),
    floored so a confident miss costs a finite -log(floor): (N, O) -> (N,)."""
    chosen = torch.where(mask, true, -torch.inf).argmax(-1, keepdim=True)
    return -p.gather(-1, chosen).squeeze(-1).clamp_min(floor).log()


def question_scores(metric: str, p, true, ordinal, mask, is_ordinal) -> torch.Tensor:
    """Per question (N rows of options), the named metric: "alignment" (higher is better),
    "accuracy" (higher is better) or "log_loss" (lower is better)."""
    if metric == "alignment":
        return alignment(p, true, ordinal, mask, is_ordinal)
    return {"accuracy": accuracy, "log_loss": log_loss}[metric](p, true, mask)
