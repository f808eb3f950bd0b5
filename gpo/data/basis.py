"""The basis: the training groups' shares of every point, which the pools, the mixture and
GPO's basis variant combine.

Groups may answer different questions (GlobalOpinionQA), so a basis group's missing share is
imputed by the mean of the basis groups that answered, and where none did by a fallback: the
group's shares predicted from the question itself (gpo/question_prior.py), or the uniform
distribution. A training group predicted as a training task sees the basis as it would be
without it: its own column is replaced by the mean of the others, and its own answers never
reach the other columns through the imputation (`rows`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Basis:
    y: torch.Tensor  # (J, P) shares of the basis groups, 0 where not answered
    answered: torch.Tensor  # (J, P) bool
    fallback: torch.Tensor  # (J, P) or (P,): each group's shares where no basis group answered
    column: torch.Tensor  # (G,) basis column of each group of the survey, -1 if not in it

    @classmethod
    def build(cls, labels: torch.Tensor, groups: list[int], fallback: torch.Tensor) -> "Basis":
        """The basis of survey groups `groups` from their rows of `labels` (G, P), NaN = not answered."""
        y = labels[groups]
        column = torch.full((labels.shape[0],), -1, dtype=torch.long, device=labels.device)
        column[groups] = torch.arange(len(groups), device=labels.device)
        return cls(y.nan_to_num(0.0), ~y.isnan(), fallback, column)

    @property
    def size(self) -> int:
        return self.y.shape[0]

    def own(self, groups: torch.Tensor) -> torch.Tensor:
        """(B, J) True at each row's own column (training tasks leave it out)."""
        cols = self.column[groups]
        return torch.arange(self.size, device=cols.device)[None] == cols[:, None]

    def rows(self, groups: torch.Tensor) -> torch.Tensor:
        """(B, J, P) the imputed basis each row may read: without the row's own group."""
        own = self.own(groups)  # (B, J)
        others = (~own).to(self.y.dtype)  # zero weights, not subtraction: the own shares leave no trace
        count = others @ self.answered.to(self.y.dtype)  # (B, P) answering basis groups but the row's own
        imputed = torch.where(count[:, None, :] > 0, ((others @ self.y) / count.clamp_min(1))[:, None, :], self.fallback)
        shares = torch.where(self.answered, self.y, imputed)  # (B, J, P)
        mean_of_others = (others[:, None, :] @ shares).squeeze(1) / others.sum(1, keepdim=True).clamp_min(1)
        return torch.where(own[..., None], mean_of_others[:, None, :], shares)

    def mean(self, groups: torch.Tensor) -> torch.Tensor:
        """(B, P) the mean of the basis groups each row may read (its own group left out)."""
        weights = (~self.own(groups)).float()
        return ((weights / weights.sum(1, keepdim=True))[:, None, :] @ self.rows(groups)).squeeze(1)

    @property
    def covered(self) -> torch.Tensor:
        """(P,) whether some basis group answered the point."""
        return self.answered.any(0)

    def features(self, groups: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """(B, N, J) the basis shares of point ids `ids` (B, N) as each row may read them."""
        rows = self.rows(groups)
        return rows.gather(2, ids.clamp_min(0)[:, None, :].expand(-1, self.size, -1)).transpose(1, 2)
