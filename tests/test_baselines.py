import numpy as np
import pandas as pd
import torch

from gpo.baselines import baseline_method, kernel, logit, mean, mixture, uniform
from gpo.data.basis import Basis
from gpo.data.schema import make_row
from gpo.data.survey import select
from gpo.evaluate import evaluate, score
from gpo.tasks import Points, Questions, labels_of, make_episode, sample_questions


def world(targets: dict, n_questions=30, seed=0):
    """Three basis groups with random distributions, plus target groups built from them."""
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(n_questions):
        n = int(rng.integers(2, 5))
        base = {g: rng.dirichlet(np.ones(n)) for g in ("a", "b", "c")}
        for g, fn in targets.items():
            base[g] = fn(base)
        for g, dist in base.items():
            rows.append(make_row("t", f"Q{q:03d}", f"q{q}?", [f"o{i}" for i in range(n)], list(range(n)), "X", g, dist, 100))
    data = select(pd.DataFrame(rows), ["a", "b", "c", *targets])
    return Points.build(data, np.zeros((data.n_points, 4), np.float32)), labels_of(data)


def basis_of(points, y, groups):
    return Basis.build(y, groups, points.uniform())


def episode(points, y, group, k, seed=0):
    rows = torch.tensor([group])
    q = sample_questions(points.available[rows], k, None, torch.Generator().manual_seed(seed))
    return make_episode(points, y, rows, q)


def test_mixture_recovers_an_exact_mixture_and_predicts_unseen_questions():
    points, y = world({"t": lambda b: 0.3 * b["a"] + 0.7 * b["c"]})
    basis = basis_of(points, y, [0, 1, 2])
    p = mixture(points, basis, episode(points, y, 3, k=10))
    assert torch.allclose(p[0], y[3], atol=1e-4)  # every question, context or not


def test_logit_pool_recovers_an_exact_log_linear_pool():
    def pool(b):
        logp = 1.5 * np.log(b["a"]) - 0.5 * np.log(b["b"])  # outside the mixtures' convex hull
        return np.exp(logp) / np.exp(logp).sum()

    points, y = world({"t": pool})
    basis = basis_of(points, y, [0, 1, 2])
    p = logit(points, basis, episode(points, y, 3, k=12), alpha=1e-6, eps=0.0)
    assert torch.allclose(p[0], y[3], atol=1e-3)
    assert not torch.allclose(mixture(points, basis, episode(points, y, 3, k=12))[0], y[3], atol=1e-2)


def test_training_groups_never_see_their_own_column():
    points, y = world({})
    basis = basis_of(points, y, [0, 1, 2])
    ep = episode(points, y, 1, k=10)  # group "b" is in the basis
    assert torch.allclose(mean(points, basis, ep)[0], (y[0] + y[2]) / 2)
    p = mixture(points, basis, ep)
    assert not torch.allclose(p[0], y[1], atol=1e-3)  # it cannot just copy itself
    tokens = ep.points
    feats = basis.features(ep.tasks, tokens)[0]  # (N, J): own column = mean of the others
    assert torch.allclose(feats[:, 1], (y[0, tokens[0]] + y[2, tokens[0]]) / 2)
    assert torch.allclose(feats[:, 0], y[0, tokens[0]])


def test_predictions_are_distributions_per_question():
    points, y = world({"t": lambda b: 0.5 * b["a"] + 0.5 * b["b"]})
    basis = basis_of(points, y, [0, 1, 2])
    ep = episode(points, y, 3, k=5)
    for fn in (uniform, mean, mixture, logit, kernel):
        p = fn(points, basis, ep)[0]
        sums = torch.zeros(points.question_points.shape[0]).index_add(0, points.point_question, p)
        assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5), fn.__name__
        assert (p >= 0).all()


def twins_world(seed=0):
    """20 pairs of twin questions (same options, same embedding). Group "t" is a log-linear
    pool of the basis plus a random shift shared by both twins: off the pools' span, but
    visible to a kernel once one twin is in the context."""
    rng = np.random.default_rng(seed)
    rows, x = [], []
    for pair in range(20):
        n = int(rng.integers(3, 5))
        base = {g: rng.dirichlet(np.ones(n)) for g in ("a", "b", "c")}
        logp = 0.5 * np.log(base["a"]) + 0.5 * np.log(base["b"]) + rng.normal(0, 1.0, n)
        base["t"] = np.exp(logp) / np.exp(logp).sum()
        embedding = rng.normal(size=8)
        for twin in range(2):
            options = [f"o{i}" for i in range(n)]
            for g, dist in base.items():
                rows.append(make_row("t", f"Q{pair:02d}{twin}", f"q{pair}?", options, list(range(n)), "X", g, dist, 100))
            x += [embedding] * n
    data = select(pd.DataFrame(rows), ["a", "b", "c", "t"])
    return Points.build(data, np.array(x, np.float32)), labels_of(data)


def test_kernel_carries_a_context_twins_shift_to_its_twin():
    points, y = twins_world()
    basis = basis_of(points, y, [0, 1, 2])
    first, second = torch.arange(0, 40, 2)[None], torch.arange(1, 40, 2)[None]  # questions sort by id: twins adjacent
    q = Questions(first, torch.ones_like(first, dtype=torch.bool), second, torch.ones_like(second, dtype=torch.bool))
    rows = torch.tensor([3])
    ep = make_episode(points, y, rows, q)
    local = score(points, y, kernel(points, basis, ep, bandwidth=0.3, alpha=0.01), rows, q)
    pool = score(points, y, logit(points, basis, ep), rows, q)
    assert local > pool + 0.05, (local, pool)


def test_kernel_with_a_huge_ridge_is_the_log_linear_pool():
    points, y = twins_world(seed=1)
    basis = basis_of(points, y, [0, 1, 2])
    ep = episode(points, y, 3, k=10)
    assert torch.allclose(kernel(points, basis, ep, alpha=1e9, pool_alpha=0.3), logit(points, basis, ep, alpha=0.3), atol=1e-5)


def test_a_group_with_nothing_left_to_predict_is_left_out_not_scored_zero(caplog):
    rng = np.random.default_rng(0)
    rows = []
    for q in range(30):
        for g in ("a", "b", "c")[: 3 if q < 8 else 2]:  # "c" answered 8 questions only
            rows.append(make_row("t", f"Q{q:03d}", f"q{q}?", ["x", "y"], [0, 1], "X", g, rng.dirichlet([1, 1]), 100))
    data = select(pd.DataFrame(rows), ["a", "b", "c"], require_all_groups=False)
    points, y = Points.build(data, np.zeros((data.n_points, 4), np.float32)), labels_of(data)
    results = evaluate({"mean": baseline_method("mean")}, points, y, basis_of(points, y, [0]), [1, 2], data.tasks, [5, 8], 2, 0)
    assert set(results[results.k == 5].task) == {"b", "c"}
    assert set(results[results.k == 8].task) == {"b"}
    assert (results.alignment > 0.5).all()
    assert "k=8: c answered at most 8 questions" in caplog.text
