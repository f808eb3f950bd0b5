"""What a person's other answers carry about their next one, on the individual task: accuracy
when *every* other answer of a test respondent is known, by a per-question multinomial logistic
regression on the one-hot of all the person's other answers (missing = 0), fit on the training
respondents, its L2 strength chosen on the validation respondents. Beside it, the population
(no context) and, for scale, the same regression with every other answer hidden (its intercept
alone). No few-shot method that reads k < all answers should be expected above the full-context
figure; it bounds what the context carries here, for this survey and these respondents.

    python bench/individual_headroom.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from gpo.config import load_config
from gpo.inputs import load_respondents

LAMBDAS = (1e-3, 1e-2, 1e-1, 1.0)


def onehot(answers: np.ndarray, n_options: np.ndarray) -> torch.Tensor:
    """(R, P) one-hot of answers (R, Q), 0 where not answered."""
    starts = np.concatenate([[0], np.cumsum(n_options)[:-1]])
    out = np.zeros((answers.shape[0], int(n_options.sum())), np.float32)
    r, q = np.nonzero(answers >= 0)
    out[r, starts[q] + answers[r, q]] = 1.0
    return torch.from_numpy(out)


def fit(x: torch.Tensor, y: torch.Tensor, n_classes: int, lam: float, steps: int = 200) -> torch.Tensor:
    """Multinomial logistic regression weights (d + 1, C) by L-BFGS, L2 on the slopes."""
    x1 = torch.cat([x, torch.ones(len(x), 1)], 1)
    w = torch.zeros(x1.shape[1], n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x1 @ w, y) + lam * w[:-1].square().sum() / len(x)
        loss.backward()
        return loss
    opt.step(closure)
    return w.detach()


def accuracy(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> np.ndarray:
    logits = torch.cat([x, torch.ones(len(x), 1)], 1) @ w
    top = logits == logits.max(1, keepdim=True).values
    return (top.gather(1, y[:, None]).squeeze(1) / top.sum(1)).numpy()  # ties as fractions, as gpo/metrics.py


def run(seed: int) -> dict:
    cfg = load_config("configs/individual.yaml", [f"data.split_seed={seed}", "embed.model=synthetic"])
    data, split = load_respondents(cfg)
    row = {g: i for i, g in enumerate(data.tasks)}
    n_options = np.array([len(o) for o in data.options])
    starts = np.concatenate([[0], np.cumsum(n_options)[:-1]])
    answers = np.full((len(data.tasks), len(n_options)), -1)
    for q, (start, n) in enumerate(zip(starts, n_options)):  # one-hot shares back to option indices
        block = data.y[:, start:start + n]
        ok = ~np.isnan(block[:, 0])
        answers[ok, q] = block[ok].argmax(1)
    roles = {role: np.array([row[g] for g in getattr(split, role)]) for role in ("train", "val", "test")}
    scores = {"full context": [], "no context": []}
    for q in range(len(n_options)):
        others = np.ones(data.n_points, bool)
        others[starts[q]:starts[q] + n_options[q]] = False
        sets = {}
        for role, rows in roles.items():
            rows = rows[answers[rows, q] >= 0]
            sets[role] = (onehot(answers[rows], n_options)[:, others], torch.as_tensor(answers[rows, q]))
        best = max(LAMBDAS, key=lambda lam: accuracy(*sets["val"], fit(*sets["train"], n_options[q], lam)).mean())
        w = fit(*sets["train"], n_options[q], best)
        x, y = sets["test"]
        scores["full context"].append(accuracy(x, y, w))
        scores["no context"].append(accuracy(torch.zeros_like(x), y, fit(torch.zeros_like(sets["train"][0]), sets["train"][1],
                                                                            n_options[q], 1.0)))
    # the mean over every test answer (the evaluation's per-respondent mean weighs respondents equally instead)
    return {name: float(np.mean(np.concatenate(v))) for name, v in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    torch.manual_seed(0)
    for seed in args.seeds:
        result = run(seed)
        print(f"split seed {seed}: accuracy over test answers, " + ", ".join(f"{k} {v:.4f}" for k, v in result.items()), flush=True)


if __name__ == "__main__":
    main()
