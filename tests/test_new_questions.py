"""Questions no training group answered: the new-questions protocol's split, and the prior on
such questions predicted from the option embeddings."""

import numpy as np
import pandas as pd
import torch

from gpo import selection as S
from gpo.baselines import baseline_method
from gpo.config import load_config
from gpo.data.schema import make_row
from gpo.data.survey import select
from gpo.evaluate import episodes
from gpo.inputs import assemble, load_survey
from gpo.metrics import alignment
from gpo.question_prior import fit_question_prior
from gpo.tasks import Points, labels_of

OVERRIDES = ["embed.model=synthetic", "data.new_question_fraction=0.25", "eval.ks=[0,5]", "train.val_k=5"]


def prepared(*extra):
    cfg = load_config("configs/synthetic.yaml", [*OVERRIDES, *extra])
    data, split, features = load_survey(cfg)
    return assemble(data, split, features, "cpu"), cfg


def test_held_out_questions_reach_no_training_or_validation_row_and_are_what_is_scored():
    prep, cfg = prepared()
    labels, points = prep.labels, prep.points
    pq = points.point_question
    rows = {role: torch.tensor(prep.index(getattr(prep.split, role))) for role in ("train", "val", "test")}
    new = {role: points.scored[rows[role]].any(0) for role in ("val", "test")}  # (Q,) each role's new questions
    assert not (new["val"] & new["test"]).any() and int(new["test"].sum()) == round(0.25 * len(prep.data.qids))
    for role, hidden in (("train", new["val"] | new["test"]), ("val", new["test"]), ("test", new["val"])):
        assert labels[rows[role]][:, hidden[pq]].isnan().all(), role  # as if never answered
    assert not prep.basis.answered[:, (new["val"] | new["test"])[pq]].any()  # the basis has no row of them
    for role in ("val", "test"):
        r, q = episodes(points, rows[role].tolist(), 5, 2, 0)
        assert new[role][q.tar[q.tar_ok]].all()  # scored on its own new questions only
        assert not new[role][q.ctx[q.ctx_ok]].any()  # its context from the others


def embedded_world(n_questions=120, n_groups=6, dim=8, seed=0):
    """Shares that follow the embeddings: group g's logit for an option is <x_option, w_g>."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_questions * 3, dim)).astype(np.float32)
    w = rng.normal(size=(n_groups, dim))
    rows = []
    for q in range(n_questions):
        logits = x[3 * q: 3 * q + 3] @ w.T  # (3, G)
        shares = np.exp(logits) / np.exp(logits).sum(0)
        rows += [make_row("emb", f"Q{q:03d}", f"question {q}", ["a", "b", "c"], [1, 2, 3], "G", f"g{g}", shares[:, g], None)
                 for g in range(n_groups)]
    data = select(pd.DataFrame(rows), "all")
    return Points.build(data, x), labels_of(data)


def test_the_question_prior_beats_uniform_where_shares_follow_the_embeddings():
    points, labels = embedded_world()
    held = torch.arange(points.question_points.shape[0]) % 4 == 0  # a quarter of the questions nobody answered
    seen = torch.where(held[points.point_question], torch.nan, labels)
    prior = fit_question_prior(points, seen)
    assert prior.alpha is not None and prior.scores[prior.alpha] > prior.scores["uniform"] + 0.05
    scored = lambda p: alignment(*(v[:, held[points.point_question]].reshape(-1, 3).double() for v in (p, labels)),  # noqa: E731
                                 torch.tensor([[1.0, 2, 3]]).double().expand(int(held.sum()) * 6, -1),
                                 torch.ones(int(held.sum()) * 6, 3, dtype=torch.bool), torch.ones(int(held.sum()) * 6, dtype=torch.bool))
    assert scored(prior.shares).mean() > scored(points.uniform().expand(6, -1)).mean() + 0.05  # on questions never seen


def test_on_new_questions_the_mean_prior_reads_the_predicted_shares():
    prep, _ = prepared()
    test = prep.index(prep.split.test)
    predicted = prep.basis.mean(torch.tensor(test))[:, (~prep.basis.covered)]
    uniform = prep.points.uniform()[~prep.basis.covered]
    expected = prep.question_prior.shares.mean(0)[~prep.basis.covered] if prep.question_prior.alpha is not None else uniform
    assert torch.allclose(predicted, expected.expand_as(predicted), atol=1e-5)


def test_without_a_signal_in_the_embeddings_the_prior_stays_uniform():
    prep, _ = prepared()
    noise = torch.randn(prep.points.x.shape, generator=torch.Generator().manual_seed(0))
    points = type(prep.points)(**{**vars(prep.points), "x": noise})
    train = prep.index(prep.split.train)
    shuffled = prep.labels[train][:, torch.randperm(prep.labels.shape[1], generator=torch.Generator().manual_seed(1))]
    prior = fit_question_prior(points, torch.where(prep.labels[train].isnan(), torch.nan, shuffled.nan_to_num(0.25)))
    assert prior.scores["uniform"] >= max(v for k, v in prior.scores.items() if k != "uniform") - 0.005
    assert np.isfinite(list(prior.scores.values())).all()


def test_on_new_questions_only_the_validation_groups_choose_the_shrink():
    """Training groups and a task's own context hold questions the basis knows; the targets are
    questions it does not: neither may raise the validation groups' choice there."""
    prep, cfg = prepared()
    assert S.per_task(prep, cfg) is None
    assert S.per_task(*prepared("data.new_question_fraction=0")) is not None
    method, mean = baseline_method("logit"), baseline_method("mean")
    on_val = S.select(prep, cfg, [({}, method)], mean, "logit", prep.split.val)
    assert S.gpo_choices(prep, cfg, "logit", method, None) == on_val
