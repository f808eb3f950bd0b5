"""Tensor building blocks shared by the model, the task sampler and the baselines."""

from __future__ import annotations

from gpo.lazy import lazy

torch = lazy("torch")  # the method modules read these functions; torch loads when one first runs


def segment_softmax(logits: torch.Tensor, segment: torch.Tensor) -> torch.Tensor:
    """Softmax of `logits` (B, N) within each segment id of its row; segment -1 gives 0.

    A question's options share a segment id, so each question's probabilities sum to one.
    """
    B, N = logits.shape
    valid = segment >= 0
    n_seg = int(segment.max().clamp_min(0)) + 1 if segment.numel() else 1  # a batch may have no targets at all
    index = torch.where(valid, segment, 0) + n_seg * torch.arange(B, device=logits.device)[:, None]
    masked = logits.masked_fill(~valid, -torch.inf)
    seg_max = torch.full((B * n_seg,), -torch.inf, dtype=logits.dtype, device=logits.device)
    seg_max = seg_max.scatter_reduce(0, index.reshape(-1), masked.detach().reshape(-1), "amax")
    shift = torch.where(valid, seg_max[index], 0.0)  # the max only steadies exp; no gradient needed
    exp = torch.where(valid, (logits - shift).exp(), 0.0)
    total = torch.zeros(B * n_seg, dtype=logits.dtype, device=logits.device).index_add(0, index.reshape(-1), exp.reshape(-1))
    return exp / total[index].clamp_min(torch.finfo(logits.dtype).tiny)


def compact(keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the kept entries of each row of `keep` (B, M) go: to the front, in order, with the
    all-padding tail dropped. Returns gather indices (B, M') and their validity (B, M')."""
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)
    width = int(keep.sum(1).max()) if keep.numel() else 0
    order = order[:, :width]
    return order, keep.gather(1, order)


def nnls(A: torch.Tensor, b: torch.Tensor, iters: int = 300) -> torch.Tensor:
    """Batched non-negative least squares min_{w >= 0} ||A w - b||^2 by accelerated projected gradient.

    A: (B, M, J), b: (B, M) -> w: (B, J). Rows of A and b that are all zero do not count, so
    padded points drop out. Matches scipy.optimize.nnls on well-posed problems (tests).
    """
    AtA = A.transpose(1, 2) @ A  # (B, J, J)
    Atb = (A.transpose(1, 2) @ b[..., None]).squeeze(-1)  # (B, J)
    step = 1.0 / torch.linalg.matrix_norm(AtA, ord=2).clamp_min(1e-12)[:, None]  # 1 / Lipschitz
    w = torch.zeros_like(Atb)
    z, t = w, 1.0
    for _ in range(iters):  # iterations, not points: each is one batched matrix product
        grad = (AtA @ z[..., None]).squeeze(-1) - Atb
        w_next = (z - step * grad).clamp_min(0.0)
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        z = w_next + ((t - 1) / t_next) * (w_next - w)
        w, t = w_next, t_next
    return w


def per_question_normalise(p: torch.Tensor, point_question: torch.Tensor) -> torch.Tensor:
    """Rescale (B, P) so the options of each question sum to one."""
    totals = torch.zeros(p.shape[0], int(point_question.max()) + 1, dtype=p.dtype, device=p.device)
    totals = totals.index_add(1, point_question, p)
    return p / totals[:, point_question].clamp_min(1e-12)


def centred_log(y: torch.Tensor, point_question: torch.Tensor, eps: float) -> torch.Tensor:
    """log(y + eps) minus its mean over each question's options: (..., P) -> (..., P)."""
    logs = (y + eps).log()
    n_q = int(point_question.max()) + 1
    flat = logs.reshape(-1, logs.shape[-1])
    totals = torch.zeros(flat.shape[0], n_q, dtype=logs.dtype, device=logs.device).index_add(1, point_question, flat)
    counts = torch.bincount(point_question, minlength=n_q).to(logs.dtype)
    return (flat - (totals / counts)[:, point_question]).reshape(logs.shape)


def distinct_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of a (T, C) float32 tensor that are equal bit for bit: (first, inverse), the first
    index of each distinct row (U,) and each row's distinct index (T,), so x[first][inverse]
    == x. Column by column, each 1-D unique over a code below T * 2^32 (torch.unique over rows,
    dim=0, is many times slower on a CPU)."""
    code = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    for column in x.unbind(1):
        bits = column.contiguous().view(torch.int32).long() & 0xFFFFFFFF
        code = torch.unique(code * 2**32 + bits, return_inverse=True)[1]
    first = torch.full((int(code.max()) + 1 if len(code) else 0,), x.shape[0], dtype=torch.long, device=x.device)
    first.scatter_reduce_(0, code, torch.arange(x.shape[0], device=x.device), "amin")
    return first, code
