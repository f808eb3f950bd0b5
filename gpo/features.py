"""What a point carries into GPO besides its share: its features, each fitted on training tasks only.

A variant names the features it reads (`model.features`); each has a declared width, and GPO
reads their concatenation, so a feature is added here without touching the model.

- embedding: the base model's embedding of the point's prompt, centred on the survey's mean
  point and scaled to unit RMS per dimension. The prompt template every point shares otherwise
  dominates (two thirds of a MiniLM embedding's norm on ATP wave 41), and the network would
  have to read differences of a few percent of its input.
- basis (groups): the training groups' shares of the option as log-shares centred within the
  question, what a log-linear pool combines (gpo/data/basis.py: a training group reads the
  basis without itself).
- loadings (respondents): the option's loadings on the leading axes of a low-rank model of the
  training respondents' answers (Panel.components), scaled by the axes' spread and
  cross-fitted: a training respondent reads the fit made without its fold, so its own answers
  never shape the features of its own episodes.
- demographic (respondents): the share of the option among the training respondents who share
  the person's attributes (the demographic baseline at the attributes validation chose; a
  training respondent's own answer left out).
"""

from __future__ import annotations

from dataclasses import dataclass

from gpo.lazy import lazy
from gpo.ops import centred_log

torch, F = lazy("torch"), lazy("torch.nn.functional")  # the config checks FEATURES before torch loads

FEATURES = {"embedding": "group", "basis": "group", "loadings": "respondent", "demographic": "respondent"}
EMBEDDING = ("embedding",)  # read by every unit: the rest are the unit's own (FEATURES' value)
LOADINGS_RANK = 16
BASIS_EPS = 0.01  # floor of a share before its log


def units(name: str) -> tuple[str, ...]:
    """The kinds of task (data.unit) a feature exists for."""
    return ("group", "respondent") if name in EMBEDDING else (FEATURES[name],)


def normalised_embedding(x: torch.Tensor) -> torch.Tensor:
    """(P, d) embeddings centred on their mean and scaled to unit RMS per dimension."""
    return F.normalize(x - x.mean(0), dim=-1) * x.shape[1] ** 0.5


@dataclass
class PointFeatures:
    """The features a GPO reads, fitted to one survey's training tasks: the embedding, a table
    of points, and called on an episode, the rest (B, N, width - the embedding's)."""

    names: tuple[str, ...]
    embedding: torch.Tensor  # (P, d)
    basis_size: int = 0  # training groups (basis)
    loadings: torch.Tensor | None = None  # (F + 1, P, r): per fold, then the whole panel's fit
    demographic: object = None  # a Method: (points, panel, episode) -> (B, P)

    @property
    def width(self) -> int:
        sizes = {"embedding": self.embedding.shape[1], "basis": self.basis_size,
                 "loadings": 0 if self.loadings is None else self.loadings.shape[2], "demographic": 1}
        return sum(sizes[n] for n in self.names)

    def __call__(self, points, basis, episode) -> torch.Tensor:
        """(B, N, width - embedding's) the features beyond the embedding, which is a table of
        points (`embedding`) that GPO maps once per point."""
        ids = episode.points.clamp_min(0)  # (B, N)
        out = [self.embedding.new_zeros(ids.shape + (0,))]
        if "basis" in self.names:
            logs = centred_log(basis.rows(episode.tasks), points.point_question, BASIS_EPS)  # (B, J, P)
            out.append(logs.gather(2, ids[:, None, :].expand(-1, logs.shape[1], -1)).transpose(1, 2))
        if "loadings" in self.names:
            fit = self.loadings[basis.fold_of(episode.tasks)]  # (B, P, r)
            out.append(fit.gather(1, ids[..., None].expand(-1, -1, fit.shape[2])))
        if "demographic" in self.names:
            out.append(self.demographic(points, basis, episode).gather(1, ids)[..., None])
        return torch.cat(out, -1)


def build_features(names, points, basis, demographic=None, scale_embedding: bool = True) -> PointFeatures:
    """The features `names` of a survey's points (Points) for its training tasks' basis (groups)
    or panel (respondents); `demographic` is the demographic baseline as chosen on validation;
    `scale_embedding` False keeps the base model's embeddings as they are (the paper's GPO)."""
    names = tuple(n for n in FEATURES if n in names)  # one order, whatever the config's
    loadings = None
    if "loadings" in names:
        axes, variances = basis.components()
        loadings = axes[:, :, :LOADINGS_RANK] * variances[:, None, :LOADINGS_RANK].sqrt()
        loadings = loadings / loadings.square().mean((1, 2), keepdim=True).sqrt().clamp_min(1e-12)  # unit RMS per fit
    embedding = normalised_embedding(points.x) if scale_embedding else points.x
    return PointFeatures(names, embedding, basis.size if "basis" in names else 0, loadings,
                         demographic if "demographic" in names else None)


def gpo_inputs(features: PointFeatures, points, basis, episode, prior=None) -> dict:
    """GPO's inputs for an episode (keyword arguments of GPO.forward): every point's features,
    the context's shares (0 at targets), and the prior's probability of every point (`prior`,
    a method; the uniform distribution for the paper's GPO)."""
    ids = episode.points
    p0 = prior(points, basis, episode) if prior is not None else points.uniform().expand(ids.shape[0], -1)
    return {"features": features(points, basis, episode), "table": features.embedding, "ids": ids, "valid": ids >= 0,
            "n_ctx": episode.n_ctx, "y": torch.cat([episode.ctx_y, torch.zeros(episode.tar.shape, device=ids.device)], 1),
            "prior": p0.gather(1, ids.clamp_min(0))}
