"""The panel: what the training respondents answered, which the respondent methods combine
(population shares, demographic cells, nearest respondents, a low-rank model), and every
respondent's attributes, which travel with the respondent (a test respondent's attributes are
known, its answers are not).

A training respondent predicted as a task never reads its own answers: its own contribution is
taken out of every sum it reads (`own`), and what is fitted to the whole panel (a low-rank
model) is cross-fitted: a training respondent reads the fit made without its fold (`folds`).
Answers are option indices (-1: none), so nothing here holds a Python object per answer; the
one-hot view (J, P) is built once, as a tensor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

FOLDS = 5  # cross-fitting folds of the training respondents


@dataclass
class Panel:
    answers: torch.Tensor  # (J, Q) long: the option each training respondent chose, -1 = no answer
    weights: torch.Tensor  # (J,) survey weights
    column: torch.Tensor  # (R,) panel row of each respondent of the survey, -1 if not a training respondent
    members: torch.Tensor  # (J,) survey row of each panel respondent
    attributes: torch.Tensor  # (R, A) long codes of every respondent's attributes, -1 = unknown
    attribute_names: list[str]
    point_question: torch.Tensor  # (P,)
    point_option: torch.Tensor  # (P,) each point's option index within its question
    uniform: torch.Tensor  # (P,) where no training respondent answered a question
    _cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, labels: torch.Tensor, train: list[int], attributes, question_points: torch.Tensor,
              point_question: torch.Tensor, weights, uniform: torch.Tensor) -> "Panel":
        """The panel of respondents `train` (rows of `labels` (R, P), one-hot answers, NaN where
        not answered) with every respondent's `attributes` (a DataFrame of categorical columns)
        and survey `weights` (R,)."""
        device = labels.device
        at = labels[:, question_points.clamp_min(0)]  # (R, Q, O)
        answers = torch.where(at[..., 0].isnan(), -1, at.nan_to_num(-1.0).argmax(-1))  # (R, Q)
        rows = torch.as_tensor(train, dtype=torch.long, device=device)
        column = torch.full((labels.shape[0],), -1, dtype=torch.long, device=device)
        column[rows] = torch.arange(len(train), device=device)
        codes = torch.tensor(attributes.apply(lambda c: c.cat.codes).to_numpy(dtype="int64").reshape(len(attributes), -1),
                             device=device)
        point_option = (question_points[point_question] == torch.arange(labels.shape[1], device=device)[:, None]).float().argmax(1)
        return cls(answers[rows], torch.tensor(weights, dtype=torch.float32, device=device)[rows], column, rows, codes,
                   list(attributes.columns), point_question, point_option, uniform)

    @property
    def size(self) -> int:
        return self.answers.shape[0]

    def onehot(self, answers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, P) each respondent's chosen points (1.0) and answered points (1.0) of answers (n, Q)."""
        at_points = answers[:, self.point_question]
        return (at_points == self.point_option).float(), (at_points >= 0).float()

    def totals(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(J, P) the panel's one-hot answers and answered points, each times the respondent's weight."""
        if "totals" not in self._cache:
            chosen, answered = self.onehot(self.answers)
            w = self.weights[:, None].float()
            self._cache["totals"] = (chosen * w, answered * w)
        return self._cache["totals"]

    def sums(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(P,) the panel's weighted chosen and answered points summed over its respondents."""
        if "sums" not in self._cache:
            chosen, answered = self.totals()
            self._cache["sums"] = (chosen.sum(0), answered.sum(0))
        return self._cache["sums"]

    def indicators(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(J, P) the panel's one-hot answers and (J, Q) its answered questions, unweighted."""
        if "indicators" not in self._cache:
            self._cache["indicators"] = (self.onehot(self.answers)[0], (self.answers >= 0).float())
        return self._cache["indicators"]

    def own(self, tasks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, P) each row's own weighted chosen and answered points if it is in the panel, else 0."""
        chosen, answered = self.totals()
        col = self.column[tasks]
        inside = (col >= 0)[:, None]
        return torch.where(inside, chosen[col.clamp_min(0)], 0.0), torch.where(inside, answered[col.clamp_min(0)], 0.0)

    def folds(self, n: int = FOLDS) -> torch.Tensor:
        """(J,) each panel respondent's fold, 0 .. n-1: a fixed order of the respondents dealt round."""
        order = torch.argsort((self.members * 0.6180339887) % 1)
        return torch.empty_like(order).scatter_(0, order, torch.arange(self.size, device=order.device) % n)

    def fold_of(self, tasks: torch.Tensor, n: int = FOLDS) -> torch.Tensor:
        """(B,) the fold of each row's respondent, n for a respondent outside the panel: the index
        of the fit a row may read when fits are made per fold and one more on the whole panel."""
        col = self.column[tasks]
        return torch.where(col >= 0, self.folds(n)[col.clamp_min(0)], n)

    def components(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The panel's principal axes (F + 1, P, P) and variances (F + 1, P), largest first: per
        fold f < F fitted without the respondents of fold f (`folds`), and last on every
        respondent. Each fit: eigenvectors of the weighted covariance of one-hot answers centred
        on the fitted respondents' shares, each pair of points averaged over the respondents who
        answered both questions."""
        if "components" not in self._cache:
            chosen, answered = self.onehot(self.answers)  # (J, P)
            folds = self.folds()
            fits = [principal_axes(chosen, answered, self.weights * (folds != f), self.uniform) for f in range(FOLDS)]
            fits.append(principal_axes(chosen, answered, self.weights, self.uniform))
            self._cache["components"] = tuple(torch.stack(t) for t in zip(*fits))
        return self._cache["components"]

    @property
    def covered(self) -> torch.Tensor:
        """(P,) whether some training respondent answered the point's question."""
        return self.sums()[1] > 0

    def population(self) -> torch.Tensor:
        """(P,) the survey-weighted answer shares of the training respondents; uniform where none answered."""
        chosen, n = self.sums()
        return torch.where(n > 0, chosen / n.clamp_min(1e-12), self.uniform)

    def mean(self, tasks: torch.Tensor) -> torch.Tensor:
        """(B, P) the population's shares as each row may read them: its own answers left out."""
        chosen, answered = self.sums()
        own_chosen, own_answered = self.own(tasks)
        n = answered - own_answered
        return torch.where(n > 0, (chosen - own_chosen) / n.clamp_min(1e-12), self.uniform)

    def cells(self, attributes: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Respondents grouped by their values of `attributes` (unknown is a value of its own):
        each respondent's cell (R,), and per cell the panel's weighted chosen (C, P) and answered
        (C, P) points."""
        if attributes not in self._cache:
            columns = [self.attribute_names.index(a) for a in attributes]
            codes = self.attributes[:, columns] + 1  # unknown (-1) becomes 0
            radix = codes.amax(0) + 1
            cell = (codes * torch.cat([radix.flip(0).cumprod(0).flip(0)[1:], radix.new_ones(1)])).sum(1)
            cell = torch.unique(cell, return_inverse=True)[1]
            chosen, answered = self.totals()
            member = cell[self.members]  # each panel respondent's cell
            n_cells = int(cell.max()) + 1
            zeros = chosen.new_zeros(n_cells, chosen.shape[1])
            self._cache[attributes] = (cell, zeros.index_add(0, member, chosen), zeros.index_add(0, member, answered))
        return self._cache[attributes]


def principal_axes(chosen: torch.Tensor, answered: torch.Tensor, weights: torch.Tensor, uniform: torch.Tensor):
    """Axes (P, P) and variances (P,) of one-hot answers (J, P) under respondent `weights` (J,)."""
    w = weights[:, None].float()
    n = (answered * w).sum(0)
    population = torch.where(n > 0, (chosen * w).sum(0) / n.clamp_min(1e-12), uniform)
    centred = (chosen - population) * answered
    cov = (centred * w).T @ centred / ((answered * w).T @ answered).clamp_min(1e-12)
    variances, axes = torch.linalg.eigh(cov.double())
    return axes.flip(1).float(), variances.flip(0).clamp_min(1e-6).float()
