"""Baselines for individual respondents, as a recommender-systems engineer would try them
first; each maps (points, panel, episode) to (B, P) probabilities, like every method.

- population (also called `mean`, gpo/baselines.py): the survey-weighted answer shares of the
  training respondents (the panel's `mean`).
- demographic: the shares of the training respondents who share the person's values of some
  attributes (a cell), smoothed toward the population with `alpha` pseudo-respondents. It reads
  no answers of the person, only attributes, which travel with every respondent.
- knn: the K training respondents who agree most with the person on its context answers
  (agreement rate with a uniform prior, so few common questions count less), their weighted
  answer shares on every other question, smoothed toward the population with `smoothing`.
- lowrank: a probabilistic PCA of the training respondents' one-hot answers (centred on the
  population; covariances over the respondents who answered both questions); a person is
  folded in from the context answers by the posterior mean of its `rank` factors (prior
  variances the eigenvalues, noise variance `noise`), and predicted as population + loading x
  factors, floored and renormalised within each question. The model is cross-fitted: a
  training respondent (GPO's prior in meta-training) reads the fit made without its fold.

With no context at all (k = 0), knn and lowrank predict the population. The panel
(gpo/data/panel.py) never lets a training respondent read its own answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpo.lazy import lazy
from gpo.ops import per_question_normalise
from gpo.registry import register

if TYPE_CHECKING:
    from gpo.data.panel import Panel
    from gpo.tasks import Episode, Points

torch, F = lazy("torch"), lazy("torch.nn.functional")  # registering loads no torch: the config checks the names first

FLOOR = 0.01  # the least probability lowrank gives an option, before renormalising


def demographic_grid(panel: Panel) -> dict:
    """Every attribute alone and every pair of them, each at two smoothing strengths."""
    names = panel.attribute_names
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    return {"attributes": [(a,) for a in names] + pairs, "alpha": [2.0, 10.0]}


@register(units=("respondent",), reads_context=False, prior=True, grid=demographic_grid)
def demographic(points: Points, panel: Panel, episode: Episode, attributes=None, alpha: float = 5.0) -> torch.Tensor:
    cell, chosen, answered = panel.cells(tuple(attributes or panel.attribute_names[:1]))
    c = cell[episode.tasks]
    own_chosen, own_answered = panel.own(episode.tasks)
    prior = panel.mean(episode.tasks)
    return (chosen[c] - own_chosen + alpha * prior) / (answered[c] - own_answered + alpha)


def counts(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b.T for 0/1 matrices: how many ones each row of a shares with each row of b. Counts
    up to 256 are exact in bfloat16, whose matrix product is several times faster than
    float32's where the hardware has bfloat16 units; elsewhere, or beyond 256, float32."""
    exact = a.shape[1] <= 256 or bool(a.sum(1).max() <= 256)
    if exact and fast_bfloat16(a.device):
        return (a.bfloat16() @ b.bfloat16().T).float()
    return a @ b.T


def fast_bfloat16(device: torch.device) -> bool:
    if device.type == "cuda":
        return True
    try:  # oneDNN's bfloat16 kernels (AVX-512 BF16 or AMX); without them bfloat16 is emulated, and slower
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def agreement(points: Points, panel: Panel, episode: Episode) -> torch.Tensor:
    """(B, J) each row's agreement rate with each panel respondent on its context answers:
    (agreements + 1) / (common questions + 2), as two products of one-hot matrices."""
    chosen, answered = panel.indicators()
    picked = (episode.ctx >= 0) & (episode.ctx_y > 0.5)  # one chosen point per context question
    ids = torch.where(picked, episode.ctx, points.x.shape[0])
    mine = torch.zeros(ids.shape[0], points.x.shape[0] + 1, device=ids.device).scatter(1, ids, 1.0)[:, :-1]  # (B, P)
    questions = torch.where(picked, panel.point_question[episode.ctx.clamp_min(0)], answered.shape[1])
    asked = torch.zeros(ids.shape[0], answered.shape[1] + 1, device=ids.device).scatter(1, questions, 1.0)[:, :-1]  # (B, Q)
    return counts(mine, chosen).add_(1).div_(counts(asked, answered).add_(2))  # in place: (B, J) is large


@register(units=("respondent",), grid={"neighbours": [10, 30, 100, 300], "smoothing": [1.0, 4.0]})
def knn(points: Points, panel: Panel, episode: Episode, neighbours: int = 30, smoothing: float = 2.0) -> torch.Tensor:
    prior = panel.mean(episode.tasks)
    has_context = ((episode.ctx >= 0) & (episode.ctx_y > 0.5)).any(1, keepdim=True)
    if not has_context.any():  # k = 0: no one to agree with (J agreement rates of 1/2 a row spared)
        return prior
    tiebreak = ((panel.members * 0.6180339887) % 1) * 1e-6  # equal agreements: an order fixed per respondent, not per panel
    sim = agreement(points, panel, episode).add_(tiebreak)
    own = panel.column[episode.tasks]
    inside = torch.nonzero(own >= 0).squeeze(1)
    sim[inside, own[inside]] = -1.0  # never itself
    top = sim.topk(min(neighbours, panel.size), dim=1).indices  # (B, K)
    chosen, answered = panel.totals()
    # the neighbours' rows summed as bags of embeddings: only their K rows are read
    near = ((F.embedding_bag(top, chosen, mode="sum") + smoothing * prior)
            / (F.embedding_bag(top, answered, mode="sum") + smoothing))
    return torch.where(has_context, near, prior)


@register(units=("respondent",), prior=True, grid={"rank": [2, 4, 8, 16, 32], "noise": [0.05, 0.1, 0.2]})
def lowrank(points: Points, panel: Panel, episode: Episode, rank: int = 8, noise: float = 0.1) -> torch.Tensor:
    axes, variances = panel.components()
    fit = panel.fold_of(episode.tasks)  # a training respondent reads the fit made without its fold
    V, lam = axes[fit, :, :rank], variances[fit, :rank]  # (B, P, r), (B, r)
    prior = panel.mean(episode.tasks)
    ok = (episode.ctx >= 0).float()
    ctx = episode.ctx.clamp_min(0)
    Vc = V.gather(1, ctx[..., None].expand(-1, -1, V.shape[2])) * ok[..., None]  # (B, M, r)
    residual = (episode.ctx_y - prior.gather(1, ctx)) * ok  # (B, M)
    precision = Vc.transpose(1, 2) @ Vc + noise * torch.diag_embed(1 / lam)
    z = torch.linalg.solve(precision, (Vc.transpose(1, 2) @ residual[..., None]))  # (B, r, 1)
    return per_question_normalise((prior + (V @ z).squeeze(-1)).clamp_min(FLOOR), points.point_question)
