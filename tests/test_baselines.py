import numpy as np
import pandas as pd
import torch

from gpo.baselines import Basis, kernel, logit, mean, mixture, uniform
from gpo.data.schema import make_row
from gpo.data.survey import select
from gpo.evaluate import baseline_method, evaluate, score
from gpo.tasks import Points, Questions, make_batch, sample_questions


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
    return data, Points.build(data, np.zeros((data.n_points, 4), np.float32))


def episode(points, group, k, seed=0):
    rows = torch.tensor([group])
    q = sample_questions(points.available[rows], k, None, torch.Generator().manual_seed(seed))
    return make_batch(points, rows, q)


def test_mixture_recovers_an_exact_mixture_and_predicts_unseen_questions():
    data, points = world({"t": lambda b: 0.3 * b["a"] + 0.7 * b["c"]})
    basis = Basis.build(points, [0, 1, 2])
    p = mixture(points, basis, episode(points, 3, k=10))
    assert torch.allclose(p[0], points.y[3], atol=1e-4)  # every question, context or not


def test_logit_pool_recovers_an_exact_log_linear_pool():
    def pool(b):
        logp = 1.5 * np.log(b["a"]) - 0.5 * np.log(b["b"])  # outside the mixtures' convex hull
        return np.exp(logp) / np.exp(logp).sum()

    data, points = world({"t": pool})
    basis = Basis.build(points, [0, 1, 2])
    p = logit(points, basis, episode(points, 3, k=12), alpha=1e-6, eps=0.0)
    assert torch.allclose(p[0], points.y[3], atol=1e-3)
    assert not torch.allclose(mixture(points, basis, episode(points, 3, k=12))[0], points.y[3], atol=1e-2)


def test_training_groups_never_see_their_own_column():
    data, points = world({})
    basis = Basis.build(points, [0, 1, 2])
    batch = episode(points, 1, k=10)  # group "b" is in the basis
    assert torch.allclose(mean(points, basis, batch)[0], (points.y[0] + points.y[2]) / 2)
    p = mixture(points, basis, batch)
    assert not torch.allclose(p[0], points.y[1], atol=1e-3)  # it cannot just copy itself
    feats = basis.features(batch)[0]  # (N, J): own column = mean of the others
    tokens = batch.points[0]
    assert torch.allclose(feats[:, 1], (points.y[0, tokens] + points.y[2, tokens]) / 2)
    assert torch.allclose(feats[:, 0], points.y[0, tokens])


def test_predictions_are_distributions_per_question():
    data, points = world({"t": lambda b: 0.5 * b["a"] + 0.5 * b["b"]})
    basis = Basis.build(points, [0, 1, 2])
    batch = episode(points, 3, k=5)
    for fn in (uniform, mean, mixture, logit, kernel):
        p = fn(points, basis, batch)[0]
        sums = torch.zeros(len(data.qids)).index_add(0, points.point_question, p)
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
    return Points.build(data, np.array(x, np.float32))


def test_kernel_carries_a_context_twins_shift_to_its_twin():
    points = twins_world()
    basis = Basis.build(points, [0, 1, 2])
    first, second = torch.arange(0, 40, 2)[None], torch.arange(1, 40, 2)[None]  # questions sort by id: twins adjacent
    q = Questions(first, torch.ones_like(first, dtype=torch.bool), second, torch.ones_like(second, dtype=torch.bool))
    rows = torch.tensor([3])
    batch = make_batch(points, rows, q)
    local = score(points, kernel(points, basis, batch, bandwidth=0.3, alpha=0.01), rows, q)
    pool = score(points, logit(points, basis, batch), rows, q)
    assert local > pool + 0.05, (local, pool)


def test_kernel_with_a_huge_ridge_is_the_log_linear_pool():
    points = twins_world(seed=1)
    basis = Basis.build(points, [0, 1, 2])
    batch = episode(points, 3, k=10)
    assert torch.allclose(kernel(points, basis, batch, alpha=1e9, pool_alpha=0.3), logit(points, basis, batch, alpha=0.3), atol=1e-5)


def test_kernel_never_reads_a_training_groups_own_column():
    points = twins_world(seed=2)
    basis = Basis.build(points, [0, 1, 2])
    batch = episode(points, 1, k=10)  # group "b" is in the basis
    moved = Basis(basis.y.clone(), basis.column)
    moved.y[1] = moved.y[0]  # its own column changes; its context answers do not
    assert torch.allclose(kernel(points, basis, batch), kernel(points, moved, batch), atol=1e-5)


def test_a_group_with_nothing_left_to_predict_is_left_out_not_scored_zero(caplog):
    rng = np.random.default_rng(0)
    rows = []
    for q in range(30):
        for g in ("a", "b", "c")[: 3 if q < 8 else 2]:  # "c" answered 8 questions only
            rows.append(make_row("t", f"Q{q:03d}", f"q{q}?", ["x", "y"], [0, 1], "X", g, rng.dirichlet([1, 1]), 100))
    data = select(pd.DataFrame(rows), ["a", "b", "c"], require_all_groups=False)
    points = Points.build(data, np.zeros((data.n_points, 4), np.float32))
    basis = Basis.build(points, [0])
    results = evaluate({"mean": baseline_method("mean")}, points, basis, [1, 2], data.groups, [5, 8], 2, 0)
    assert set(results[results.k == 5].group) == {"b", "c"}
    assert set(results[results.k == 8].group) == {"b"}
    assert (results.alignment > 0.5).all()
    assert "k=8: c answered at most 8 questions" in caplog.text
