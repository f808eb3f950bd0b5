"""Cheap baselines, evaluated on the same episodes as GPO; each maps (points, basis, episode)
to (B, P) probabilities.

- uniform: every option of a question equally likely.
- mean: the mean distribution of the training groups (no context at all).
- mixture: the group as a non-negative mixture of the training groups, fitted by NNLS on
  its context points (weights renormalised to sum to one), predicting every question with
  that mixture of the training groups' distributions.
- logit: a log-linear pool of the training groups, log p = sum_j w_j log y_j + c per
  question, with w fitted by ridge regression (toward equal weights) on the context
  points' centred log-shares. Unlike the mixture, w may be negative, so a group outside
  the training groups' convex hull can still be fitted.
- ridge: the mean prior plus a kernel ridge regression of the context residuals y - mean
  on the embeddings (centred, unit-normalised); clipped and renormalised within each question.
- kernel: the log-linear pool plus a Gaussian-kernel ridge regression of its residuals (in
  centred log-shares) on each point's embedding and basis log-shares: a nonlinear, local
  correction, so a group's answers on similar context questions move its prediction.

The training groups form the basis (gpo/data/basis.py). A group inside the basis (a
training task) never reads its own column: its mean, mixture and pools leave it out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpo import recommenders  # noqa: F401  (registers the respondent baselines)
from gpo.lazy import lazy
from gpo.ops import centred_log, nnls, per_question_normalise, segment_softmax
from gpo.registry import REGISTRY, register

if TYPE_CHECKING:
    from gpo.data.basis import Basis
    from gpo.data.panel import Panel
    from gpo.tasks import Episode, Method, Points

torch, F = lazy("torch"), lazy("torch.nn.functional")  # registering loads no torch: the config checks the names first


def at(values: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """(B, J, M) values (B, J, P) at each row's point ids (B, M)."""
    return values.gather(2, ids.clamp_min(0)[:, None, :].expand(-1, values.shape[1], -1))


@register(units=("group", "respondent"), reads_context=False)
def uniform(points: Points, basis: Basis, episode: Episode) -> torch.Tensor:
    return points.uniform().expand(episode.tasks.shape[0], -1)


@register(units=("group", "respondent"), reads_context=False, prior=True)
def mean(points: Points, basis: Basis | Panel, episode: Episode) -> torch.Tensor:
    return basis.mean(episode.tasks)


@register(units=("group",), prior=True)
def mixture(points: Points, basis: Basis, episode: Episode) -> torch.Tensor:
    ok = episode.ctx >= 0  # (B, M)
    own = basis.own(episode.tasks)
    rows = basis.rows(episode.tasks)  # (B, J, P)
    A = at(rows, episode.ctx).transpose(1, 2) * (ok[..., None] & ~own[:, None, :])  # (B, M, J)
    w = nnls(A.double(), (episode.ctx_y * ok).double()).float()
    fallback = (~own).float()  # no context, or nothing fitted: the mean of the basis
    w = torch.where(w.sum(1, keepdim=True) > 0, w, fallback)
    return ((w / w.sum(1, keepdim=True))[:, None, :] @ rows).squeeze(1)


def context_centred_log(points: Points, episode: Episode, eps: float) -> torch.Tensor:
    """(B, M) centred log-shares of the context points, centred within each context question."""
    ok = episode.ctx >= 0
    ctx = episode.ctx.clamp_min(0)
    ctx_y = torch.zeros(ctx.shape[0], points.x.shape[0], device=points.device).scatter(1, ctx, episode.ctx_y * ok)
    return centred_log(ctx_y, points.point_question, eps).gather(1, ctx) * ok


@register(units=("group",), prior=True, grid={"alpha": [0.03, 0.1, 0.3, 1.0, 3.0]})
def logit(points: Points, basis: Basis, episode: Episode, alpha: float = 0.1, eps: float = 0.003) -> torch.Tensor:
    B = episode.tasks.shape[0]
    return segment_softmax(pool_logits(points, basis, episode, alpha, eps), points.point_question.expand(B, -1))


def pool_logits(points: Points, basis: Basis, episode: Episode, alpha: float, eps: float) -> torch.Tensor:
    """(B, P) the log-linear pool's logits, centred within each question."""
    L = centred_log(basis.rows(episode.tasks), points.point_question, eps)  # (B, J, P)
    ok = episode.ctx >= 0
    own = basis.own(episode.tasks)
    A = at(L, episode.ctx).transpose(1, 2) * (ok[..., None] & ~own[:, None, :])  # (B, M, J)
    b = context_centred_log(points, episode, eps)
    w0 = (~own).float() / (~own).sum(1, keepdim=True)
    eye = torch.eye(basis.size, device=L.device)
    lhs = A.transpose(1, 2) @ A + alpha * eye
    rhs = (A.transpose(1, 2) @ b[..., None]).squeeze(-1) + alpha * w0
    w = torch.linalg.solve(lhs.double(), rhs.double()).float() * (~own)
    return (w[:, None, :] @ L).squeeze(1)


@register(units=("group",), grid={"alpha": [0.1, 1.0, 10.0, 100.0]})
def ridge(points: Points, basis: Basis, episode: Episode, alpha: float = 1.0) -> torch.Tensor:
    prior = mean(points, basis, episode)  # (B, P)
    z = F.normalize(points.x - points.x.mean(0), dim=-1)  # (P, d): centred, or the shared template dominates
    ok = (episode.ctx >= 0).float()
    zc = z[episode.ctx.clamp_min(0)] * ok[..., None]  # (B, M, d)
    residual = (episode.ctx_y - prior.gather(1, episode.ctx.clamp_min(0))) * ok
    K = zc @ zc.transpose(1, 2) + alpha * torch.eye(zc.shape[1], device=z.device)
    coef = torch.linalg.solve(K, residual[..., None])  # (B, M, 1)
    correction = torch.einsum("pd,bmd,bm->bp", z, zc, coef.squeeze(-1))
    p = (prior + correction).clamp_min(1e-4)
    return per_question_normalise(p, points.point_question)


@register(units=("group",), prior=True, grid={"pool_alpha": [0.1, 1.0], "bandwidth": [0.3, 0.6], "alpha": [0.1, 1.0]})
def kernel(points: Points, basis: Basis, episode: Episode, bandwidth: float = 0.6, alpha: float = 1.0,
           pool_alpha: float = 0.1, eps: float = 0.003) -> torch.Tensor:
    pq = points.point_question
    pool = pool_logits(points, basis, episode, pool_alpha, eps)  # (B, P)
    ctx = episode.ctx.clamp_min(0)
    ok = episode.ctx >= 0
    residual = (context_centred_log(points, episode, eps) - pool.gather(1, ctx)) * ok  # (B, M)
    # squared distances: embeddings by cosine, basis log-shares standardised and averaged over
    # groups; a row never reads its own basis column (training tasks), so features are per row
    z = F.normalize(points.x - points.x.mean(0), dim=-1)  # (P, d)
    others = ~basis.own(episode.tasks)  # (B, J)
    b = centred_log(basis.rows(episode.tasks), pq, eps).transpose(1, 2) * others[:, None, :]  # (B, P, J)
    b = b / (b.square().sum((1, 2), keepdim=True) / (b.shape[1] * others.sum(1)[:, None, None])).sqrt()  # unit RMS
    bc = b.gather(1, ctx[..., None].expand(-1, -1, b.shape[2]))  # (B, M, J)
    d_basis = (bc.square().sum(-1)[..., None] + b.square().sum(-1)[:, None] - 2 * bc @ b.transpose(1, 2)) / others.sum(1)[:, None, None]
    d_embed = 2 - 2 * z[ctx] @ z.T  # (B, M, P)
    K = torch.exp(-d_embed / (2 * bandwidth**2) - d_basis.clamp_min(0) / 2) * ok[..., None]
    Kc = K.gather(2, ctx[:, None, :].expand(-1, ctx.shape[1], -1)) * ok[:, None, :]  # (B, M, M)
    eye = torch.eye(ctx.shape[1], device=K.device)
    coef = torch.linalg.solve(Kc.double() + alpha * eye, residual[..., None].double()).float()
    return segment_softmax(pool + (K * coef).sum(1), pq.expand(pool.shape[0], -1))


# the respondents' population shares are the training respondents' mean
register("population", units=("respondent",), reads_context=False, prior=True)(mean)


def baseline_method(name: str, **params) -> Method:
    """Baseline `name` with hyperparameters `params`, as a method."""
    fn = REGISTRY[name].fn
    return lambda points, basis, episode: fn(points, basis, episode, **params)
