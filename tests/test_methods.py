"""Methods built in one place: per-k settings chosen on validation groups, with shrinkage
toward the no-context mean prior among the choices."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from gpo.baselines import baseline_method
from gpo.config import load_config
from gpo.data.schema import make_row
from gpo.data.splits import GroupSplit
from gpo.data.survey import select as select_groups
from gpo.evaluate import evaluate
from gpo.inputs import assemble
from gpo.selection import Choice, PerK, baseline, choose, gpo_choices, restored, stored


def test_a_per_k_method_takes_the_settings_of_the_nearest_k():
    calls = []
    method = PerK({20: lambda *a: calls.append(20), 0: lambda *a: calls.append(0), 5: lambda *a: calls.append(5)})
    for k in (0, 2, 3, 5, 12, 13, 100):
        method(None, None, SimpleNamespace(k=k))
    assert calls == [0, 0, 5, 5, 5, 20, 20]  # ties go to the smaller k


def test_choices_are_one_per_k_type_kept_as_checkpoints_keep_them():
    choices = PerK({10: Choice({"alpha": 0.3}, 0.5, 0.71), 0: Choice()})
    assert choices[3] == Choice() and choices[7].params == {"alpha": 0.3}
    kept = {str(k): v for k, v in stored(choices).items()}  # a JSON round trip makes the keys strings
    assert restored(kept) == choices and 10 in choices and 7 not in choices
    assert choices.map(lambda c: c.shrink) == PerK({0: 0.0, 10: 0.5})


def the_mean_is_right_world(seed=0):
    """Every group answers each question's population distribution up to the sampling noise
    of 100 respondents: the no-context mean of the training groups is as good as it gets, and
    a pool fitted on a few noisy context answers can only lose to it."""
    rng = np.random.default_rng(seed)
    rows = []
    groups = ["a", "b", "c", "d", "e", "f"] + [f"t{i}" for i in range(8)]
    for q in range(60):
        n = int(rng.integers(3, 6))
        population = rng.dirichlet(np.ones(n))
        for g in groups:
            dist = rng.multinomial(100, population) / 100
            rows.append(make_row("t", f"Q{q:03d}", f"q{q}?", [f"o{i}" for i in range(n)], list(range(n)), "X", g, dist, 100))
    data = select_groups(pd.DataFrame(rows), "all")
    split = GroupSplit(train=list("abcdef"), val=["t0", "t1", "t2", "t3"], test=["t4", "t5", "t6", "t7"])
    return assemble(data, split, np.zeros((data.n_points, 4), np.float32), "cpu")


@pytest.mark.parametrize("name", ["logit", "kernel"])
def test_shrinking_toward_the_mean_is_chosen_where_the_context_misleads(name):
    prep = the_mean_is_right_world()
    cfg = load_config(None, ["eval.ks=[5]", "train.val_k=5", "eval.draws=4"])
    chooser = prep.index(prep.split.val + prep.split.train)  # a baseline's settings are chosen on both

    def where_chosen(method):
        results = evaluate({"m": method}, prep.points, prep.labels, prep.basis, chooser, prep.data.tasks, [5], 4,
                           cfg.eval.seed + 1)
        return results["alignment"].mean()

    mean = where_chosen(baseline_method("mean"))
    unshrunk = choose(prep, load_config(None, ["eval.ks=[5]", "train.val_k=5", "eval.draws=4", "eval.shrink.enabled=false"]), name)
    assert unshrunk[5].shrink == 0 and where_chosen(baseline(name, unshrunk)) < mean  # the failure being guarded
    chosen = choose(prep, cfg, name)
    assert chosen[5].shrink > 0
    assert where_chosen(baseline(name, chosen)) >= mean  # by construction: the mean alone is a choice
    test = prep.index(prep.split.test)
    scored = evaluate({"shrunk": baseline(name, chosen), "plain": baseline(name, unshrunk), "mean": baseline_method("mean")},
                      prep.points, prep.labels, prep.basis, test, prep.data.tasks, [5], 4, 0).groupby("method")["alignment"].mean()
    assert scored["shrunk"] > scored["plain"]


def test_gpo_is_shrunk_at_least_as_much_as_its_training_groups_ask():
    """Validation groups that favour GPO cannot argue it out of the shrink its own training
    groups, which flatter it, ask for."""
    prep = the_mean_is_right_world()
    seen, truth, uniform = prep.basis.column >= 0, prep.labels.nan_to_num(0.0), prep.points.uniform()

    def right_on_unseen_groups_only(points, basis, episode):  # a fixture: the truth where unseen, uniform where seen
        return torch.where(seen[episode.tasks][:, None], uniform, truth[episode.tasks])

    settings = ["eval.ks=[5]", "train.val_k=5", "eval.draws=4"]
    val_only = load_config(None, [*settings, "eval.shrink.training_floor=false"])
    assert gpo_choices(prep, val_only, "gpo", right_on_unseen_groups_only, None)[5].shrink == 0.0
    floored = load_config(None, settings)
    assert gpo_choices(prep, floored, "gpo", right_on_unseen_groups_only, None)[5].shrink == 1.0
    prior = baseline_method("mean")  # a residual GPO is shrunk toward its prior instead, all the way here
    assert gpo_choices(prep, floored, "gpo", right_on_unseen_groups_only, prior)[5].shrink == 1.0


def test_a_choice_mixes_its_candidate_with_the_mean_by_its_weight():
    prep = the_mean_is_right_world()
    from gpo.evaluate import predict
    from gpo.tasks import sample_questions

    rows = torch.tensor(prep.index(prep.split.test))
    q = sample_questions(prep.points.available[rows], 5, None, torch.Generator().manual_seed(0))
    plain = predict(baseline_method("logit", alpha=0.3), prep.points, prep.labels, prep.basis, rows, q)
    mixed = predict(baseline("logit", PerK({5: Choice({"alpha": 0.3}, 0.5)})), prep.points, prep.labels, prep.basis, rows, q)
    mean = predict(baseline_method("mean"), prep.points, prep.labels, prep.basis, rows, q)
    assert torch.allclose(mixed, 0.5 * plain + 0.5 * mean)
