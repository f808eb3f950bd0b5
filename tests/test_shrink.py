"""Shrinkage chosen per task from its own context: leave-one-out episodes hold out exactly one
context question each, the one-standard-error rule picks the most shrunk weight the evidence
allows, and the choice follows the context: toward the reference where reading it misleads,
away from it where the method knows better."""

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from gpo.baselines import baseline_method
from gpo.data.schema import make_row
from gpo.data.splits import GroupSplit
from gpo.data.survey import select
from gpo.evaluate import evaluate
from gpo.inputs import assemble
from gpo.shrink import SHRINK, PerTask, context_weights, leave_one_out, most_shrunk_within_se, shrunk
from gpo.tasks import make_episode, sample_questions


def survey(seed=0, n_questions=40):
    """Groups answering each question's population distribution up to the sampling noise of
    100 respondents, with 2 to 5 options a question: the mean of the training groups is as
    good as it gets."""
    rng = np.random.default_rng(seed)
    rows, groups = [], ["a", "b", "c", "d", "t0", "t1", "t2", "t3"]
    for q in range(n_questions):
        n = int(rng.integers(2, 6))
        population = rng.dirichlet(np.ones(n))
        for g in groups:
            rows.append(make_row("t", f"Q{q:03d}", f"q{q}?", [f"o{i}" for i in range(n)], list(range(n)), "X", g,
                                 rng.multinomial(100, population) / 100, 100))
    data = select(pd.DataFrame(rows), "all")
    return assemble(data, GroupSplit(train=list("abcd"), val=["t0", "t1"], test=["t2", "t3"]),
                    np.zeros((data.n_points, 4), np.float32), "cpu")


PREP = survey()
TEST = torch.tensor(PREP.index(["t2", "t3"]))


def episode(k, seed=0, draws=3):
    rows = TEST.repeat_interleave(draws)
    q = sample_questions(PREP.points.available[rows], k, None, torch.Generator().manual_seed(seed))
    return make_episode(PREP.points, PREP.labels, rows, q), rows, q


@given(k=st.integers(2, 8), seed=st.integers(0, 1000), holdout=st.integers(0, 9))
def test_each_leave_one_out_row_holds_out_exactly_one_context_question(k, seed, holdout):
    ep, rows, q = episode(k, seed)
    loo, held_y, ok = leave_one_out(PREP.points, ep, holdout)
    h = min(k, holdout) if holdout else k  # the first h context questions are held out, one per row
    assert loo.k == k - 1 and ok.all() and ok.shape[1] == h and loo.tasks.tolist() == rows.repeat_interleave(h).tolist()
    pq = PREP.points.point_question
    for b in range(ep.ctx.shape[0]):
        context = set(ep.ctx[b][ep.ctx[b] >= 0].tolist())
        for j in range(h):
            r = b * h + j
            rest, held = loo.ctx[r][loo.ctx[r] >= 0], loo.tar[r][loo.tar[r] >= 0]
            assert pq[held].unique().tolist() == [int(q.ctx[b, j])]  # one question: the j-th of the context
            assert held.numel() == int((PREP.points.question_points[q.ctx[b, j]] >= 0).sum())  # all its options
            assert set(rest.tolist()) | set(held.tolist()) == context and not set(rest.tolist()) & set(held.tolist())
            assert torch.equal(loo.ctx_y[r][: rest.numel()], PREP.labels[rows[b], rest])
            assert torch.equal(held_y[r][: held.numel()], PREP.labels[rows[b], held])
            assert (loo.segment[r] == torch.where(loo.tar[r] >= 0, 0, -1)).all()


@given(st.lists(st.floats(0.0, 1.0), min_size=2 * 3 * len(SHRINK), max_size=2 * 3 * len(SHRINK)),
       st.sampled_from([0.0, 0.5, 1.0, 2.0]))
def test_the_rule_picks_the_most_shrunk_weight_within_the_standard_errors(values, se):
    scores = torch.tensor(values, dtype=torch.float64).reshape(2, 3, len(SHRINK))
    ok = torch.ones(2, 3, dtype=torch.bool)
    chosen = most_shrunk_within_se(scores, ok, se)
    for b in range(2):
        best = int(scores[b].mean(0).argmax())
        gap = scores[b, :, best][:, None] - scores[b]  # (k, W)
        within = gap.mean(0) <= se * gap.std(0) / 3**0.5 + 1e-12
        assert within[chosen[b]] and not within[chosen[b] + 1:].any()


@pytest.mark.parametrize("se", [0.0, 1.0])
def test_equal_evidence_goes_to_the_reference_and_a_clear_lead_to_the_method(se):
    ok = torch.ones(1, 4, dtype=torch.bool)
    assert most_shrunk_within_se(torch.full((1, 4, len(SHRINK)), 0.9), ok, se).item() == len(SHRINK) - 1
    lead = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5]]).expand(4, -1) + torch.tensor([0.0, 0.01, 0.02, 0.03])[:, None]
    assert most_shrunk_within_se(lead[None], ok, se).item() == 0


def oracle(points, basis, ep):
    """Knows every group's true shares: reading it always beats the mean prior."""
    return PREP.labels[ep.tasks].nan_to_num(0.0)


@pytest.mark.parametrize("se", [0.0, 1.0])
def test_the_context_chooses_the_oracle_and_shrinks_a_misled_pool(se):
    ep, rows, q = episode(10)
    mean = baseline_method("mean")
    assert (context_weights(oracle, mean, PREP.points, PREP.basis, ep, PerTask(se)) == 0).all()
    # a log-linear pool fitted with almost no regularisation chases the sampling noise of 10 answers
    pool = baseline_method("logit", alpha=1e-4)
    weights = context_weights(pool, mean, PREP.points, PREP.basis, ep, PerTask(se))
    assert weights.mean() >= 0.75
    methods = {"shrunk": shrunk(pool, mean, 0.0, PerTask(se)), "pool": pool, "mean": mean}
    scores = evaluate(methods, PREP.points, PREP.labels, PREP.basis, TEST.tolist(), PREP.data.tasks, [10], 3, 0)
    scores = scores.groupby("method")["alignment"].mean()
    assert scores["pool"] < scores["mean"] - 0.005 and scores["shrunk"] > scores["mean"] - 0.002


def test_a_shrunk_prediction_mixes_each_row_by_its_own_weight_and_never_less_than_the_validation_weight():
    ep, rows, q = episode(6)
    pool, mean = baseline_method("logit", alpha=1e-4), baseline_method("mean")
    p, r = pool(PREP.points, PREP.basis, ep), mean(PREP.points, PREP.basis, ep)
    w = context_weights(pool, mean, PREP.points, PREP.basis, ep, PerTask(0.0))
    for floor in (0.0, 0.5):
        mixed = shrunk(pool, mean, floor, PerTask(0.0))(PREP.points, PREP.basis, ep)
        expected = torch.maximum(w, torch.tensor(floor))[:, None]
        assert torch.allclose(mixed, (1 - expected) * p + expected * r)
    assert torch.allclose(shrunk(pool, mean, 0.5)(PREP.points, PREP.basis, ep), 0.5 * p + 0.5 * r)
    short, _, _ = episode(1)
    assert (context_weights(pool, mean, PREP.points, PREP.basis, short, PerTask(0.0)) == 0).all()  # nothing to hold out
