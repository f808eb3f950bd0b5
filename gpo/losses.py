"""Training objectives over target points (pure functions of model outputs and labels).

All take the target means and log-stds (B, N), the true shares y (B, N) and each target's
question segment (B, N; -1 on padding), and return a scalar.
- "gaussian" (the paper): -log N(y; softmax_q(mean), exp(log_std)), summed over target
  points, averaged over the batch.
- "ce": cross-entropy -sum_o y_o log p_o per question, averaged over questions: trains on
  the distribution itself and cannot buy loss by shrinking a std on easy points.
"""

from __future__ import annotations

import math

from gpo.lazy import lazy
from gpo.ops import segment_softmax

torch = lazy("torch")  # the config checks the names of LOSSES before torch loads


def gaussian_nll(mean, log_std, y, segment) -> torch.Tensor:
    p = segment_softmax(mean, segment)
    valid = segment >= 0
    nll = 0.5 * ((y - p) / log_std.exp()) ** 2 + log_std + 0.5 * math.log(2 * math.pi)
    return torch.where(valid, nll, 0.0).sum() / mean.shape[0]


def cross_entropy(mean, log_std, y, segment) -> torch.Tensor:
    p = segment_softmax(mean, segment)
    valid = segment >= 0
    per_point = -torch.xlogy(torch.where(valid, y, 0.0), torch.where(valid, p, 1.0))
    n_questions = (segment.amax(1) + 1).clamp_min(1).sum()  # segments are 0..S-1 per row
    return per_point.sum() / n_questions


LOSSES = {"gaussian": gaussian_nll, "ce": cross_entropy}
