"""Respondents as tasks: the split, the panel the respondent baselines read, what no method may
read (a test respondent's targets, a training respondent's own answers), and the baselines on a
synthetic population with known latent classes."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import run_gpo

from gpo.baselines import baseline_method
from gpo.config import ModelConfig, load_config
from gpo.data.panel import Panel
from gpo.data.synthetic import SyntheticRespondents
from gpo.errors import DataError
from gpo.evaluate import evaluate, predict
from gpo.inputs import assemble, forms, load_respondents
from gpo.methods import gpo_features, gpo_method
from gpo.model import GPO
from gpo.results import RESULTS_SCHEMA, SCHEMA_KEY
from gpo.tasks import sample_questions

CONFIG = "configs/individual.yaml"


def world(n=1200, **kw):
    """A prepared synthetic population (random point features) and each respondent's class."""
    responses, x, classes = SyntheticRespondents(n_respondents=n, **kw).build()
    cfg = load_config(CONFIG, ["embed.model=synthetic", "eval.ks=[0,5,20]", "train.val_k=5"])
    data, split = load_respondents(cfg, responses)
    return assemble(data, split, x, "cpu"), classes, cfg


PREP, CLASSES, CFG = world()


def methods(panel=None):
    """GPO's variants (their features fitted to `panel`, default PREP's) and the baselines."""
    features = gpo_features(replace(PREP, basis=panel or PREP.basis), ModelConfig(features=["embedding", "loadings"]), {})
    torch.manual_seed(0)
    out = {}
    for name, prior in (("gpo", None), ("gpo[lowrank+loadings]", "lowrank")):
        model = GPO(ModelConfig(d_model=16, n_layers=1, n_heads=2, d_ff=16, prior=prior or "none",
                                features=["embedding", "loadings"]), features.width)
        for p in model.parameters():  # a trained model's weights are not zero: make the residual read its inputs
            torch.nn.init.normal_(p, std=0.3)
        out[name] = gpo_method(model, features, prior and baseline_method(prior))
    return {**out, **{name: baseline_method(name) for name in ("population", "demographic", "knn", "lowrank")}}


def test_roles_hold_each_survey_form_in_proportion():
    responses, _, _ = SyntheticRespondents(n_respondents=1200).build()  # the world PREP was made from
    strata = dict(zip(responses.respondents, forms(responses.asked)))
    split = PREP.split
    assert not set(split.train) & set(split.val) and not set(split.train + split.val) & set(split.test)
    assert len(split.train + split.val + split.test) == 1200 and len(set(strata.values())) == 2
    for role, share in (("test", 0.6), ("val", 0.1), ("train", 0.3)):
        for s in set(strata.values()):
            in_stratum = sum(strata[r] == s for r in responses.respondents)
            assert abs(sum(strata[r] == s for r in getattr(split, role)) - share * in_stratum) <= 2, (role, s)


def test_a_test_respondents_targets_never_reach_any_method():
    test = torch.tensor(PREP.index(PREP.split.test[:40]))
    q = sample_questions(PREP.points.available[test], 5, None, torch.Generator().manual_seed(0))
    poisoned = PREP.labels.clone()
    targets = PREP.points.question_points[q.tar].clamp_min(0)  # (B, T, O) the target questions' points
    rows = test[:, None, None].expand_as(targets)
    poisoned[rows, targets] = torch.where(poisoned[rows, targets].isnan(), torch.nan, 1.0 - poisoned[rows, targets])
    others = torch.tensor(PREP.index(PREP.split.test[40:] + PREP.split.val))
    poisoned[others] = 1.0 - poisoned[others]  # every other held-out respondent's answers, flipped
    for name, method in methods().items():
        clean = predict(method, PREP.points, PREP.labels, PREP.basis, test, q)
        assert torch.equal(clean, predict(method, PREP.points, poisoned, PREP.basis, test, q)), name


def test_a_training_respondent_never_reads_its_own_answers():
    """Its answers changed in the panel (every answer another option), a training respondent's
    predictions from the same context do not change: no method, fit or feature reads them."""
    train = PREP.index(PREP.split.train)
    for i in range(3):
        me = torch.tensor([train[i]])
        poisoned = PREP.labels.clone()
        poisoned[me] = 1.0 - poisoned[me]  # argmax takes the first option not chosen
        panel = Panel.build(poisoned, train, PREP.data.demographics, PREP.points.question_points,
                            PREP.points.point_question, PREP.data.weights, PREP.points.uniform())
        assert not torch.equal(panel.answers, PREP.basis.answers)
        q = sample_questions(PREP.points.available[me], 5, None, torch.Generator().manual_seed(i))
        for (name, method), theirs in zip(methods().items(), methods(panel).values()):
            mine = predict(method, PREP.points, PREP.labels, PREP.basis, me, q)
            assert torch.allclose(mine, predict(theirs, PREP.points, PREP.labels, panel, me, q), atol=1e-5), name


def test_nearest_respondents_and_low_rank_recover_the_classes_the_population_cannot():
    results = evaluate({name: baseline_method(name) for name in ("population", "demographic", "knn", "lowrank")},
                       PREP.points, PREP.labels, PREP.basis, PREP.index(PREP.split.test), PREP.data.tasks, [0, 20], 2, 0,
                       512, metrics=("accuracy", "log_loss"))
    acc = results.pivot_table(index="method", columns="k", values="accuracy")
    assert acc.loc["population", 20] == pytest.approx(acc.loc["population", 0], abs=0.01)  # context changes nothing
    assert acc.loc["demographic", 0] > acc.loc["population", 0] + 0.03  # the attribute names the class for half
    for name in ("knn", "lowrank"):
        assert acc.loc[name, 20] > acc.loc["population", 20] + 0.1, name
    # the best any method can do: each class's most likely answer to every question, known exactly
    assert (results[results.k == 20].groupby("method").log_loss.mean()[["knn", "lowrank"]]
            < results[results.k == 20].groupby("method").log_loss.mean()["population"]).all()


def test_respondents_with_too_few_answers_are_reported_and_skipped_or_stop_the_run(caplog):
    responses, _, _ = SyntheticRespondents(n_respondents=300, n_questions=60).build()
    responses.answers[:5, 5:] = -1  # five respondents answered 5 questions at most
    skip = load_config(CONFIG, ["embed.model=synthetic", "eval.ks=[0,10]", "train.val_k=5"])
    data, split = load_respondents(skip, responses)
    assert len(data.tasks) == 295 and not set(responses.respondents[:5]) & set(data.tasks)
    assert "5 of 300 respondents answered at most 10 questions, the largest context size (eval.ks, train.val_k): left out" \
        in caplog.text
    strict = load_config(CONFIG, ["embed.model=synthetic", "eval.ks=[0,10]", "train.val_k=5", "data.on_bad_rows=error"])
    with pytest.raises(DataError, match=r"synthetic: row 1: field 'answers': \d answers: a task needs more than the largest "
                                        r"context size \(10\)"):
        load_respondents(strict, responses)


def test_a_tiny_panel_is_said_before_any_work(caplog):
    responses, x, _ = SyntheticRespondents(n_respondents=8).build()
    cfg = load_config(CONFIG, ["embed.model=synthetic", "eval.ks=[0,5]", "train.val_k=5"])
    assemble(*load_respondents(cfg, responses), x, "cpu")
    assert "training respondent(s): the population's shares and every method that reads the panel rest on them alone" in caplog.text


def test_named_respondents_take_their_roles_and_unknown_ids_are_one_line():
    responses, _, _ = SyntheticRespondents(n_respondents=300).build()
    cfg = load_config(CONFIG, ["embed.model=synthetic", "eval.ks=[0,5]", "train.val_k=5", "data.test_groups=[r1, r2]"])
    _, split = load_respondents(cfg, responses)
    assert split.test == ["r1", "r2"] and len(split.train) + len(split.val) == 298
    bad = load_config(CONFIG, ["embed.model=synthetic", "eval.ks=[0,5]", "train.val_k=5", "data.test_groups=[nobody]"])
    with pytest.raises(DataError, match=r"data.test_groups: respondents are named by id; not in the data: \['nobody'\]"):
        load_respondents(bad, responses)


def test_the_individual_task_end_to_end_from_the_command_line(tmp_path):
    out = run_gpo("run", CONFIG, "--set", "data.source=synthetic", "embed.model=synthetic",
                  "data.synthetic_respondents.n_respondents=400", "train.steps=4", "train.eval_every=2", "eval.ks=[0,5]",
                  "train.val_k=5", "eval.draws=1", f"out_dir={tmp_path}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "accuracy on held-out respondents" in out.stdout and "log loss of the answer" in out.stdout
    results = pd.read_parquet(tmp_path / "individual" / "results.parquet")
    test = results[results.role == "test"]
    assert set(test.method) == {"gpo[demographic]", "uniform", "population", "demographic", "knn", "lowrank"}  # unshrunk
    # what a row's method is comes from its columns, under the schema version the file names
    kinds = test.drop_duplicates("method").set_index("method")[["family", "variant", "shrunk", "ensemble"]]
    assert kinds.loc["gpo[demographic]"].tolist() == ["gpo", "demographic", False, 1]
    assert kinds.loc["knn"].tolist() == ["knn", "", False, 1]
    assert results.attrs[SCHEMA_KEY] == RESULTS_SCHEMA and "task" in results
    assert (test.metric == "accuracy").all() and test.score.equals(test.accuracy) and test.weight.notna().all()
    assert test.task.nunique() == 240 and test.accuracy.between(0, 1).all() and (test.log_loss > 0).all()


def test_w41_respondents_split_by_form(shared_data):
    cfg = load_config(CONFIG, ["embed.model=synthetic"])
    data, split = load_respondents(cfg)
    assert data.unit == "respondent" and len(data.qids) == 90 and 2400 < len(data.tasks) <= 2524
    assert abs(len(split.test) / len(data.tasks) - 0.6) < 0.01 and np.isclose(data.weights.mean(), 1, atol=0.05)
    assert set(data.demographics.columns) >= {"POLPARTY", "AGE", "SEX", "RACE"}


def test_gpo_data_summarises_the_respondents_and_writes_their_answers(shared_data, tmp_path):
    out = run_gpo("data", CONFIG, "--out", str(tmp_path / "w41.parquet"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("atp-w41: 90 questions") and "test   1515 respondents" in out.stdout
    answers = pd.read_parquet(tmp_path / "w41.parquet")
    assert answers.respondent.nunique() == 2519 and {"respondent", "qid", "answer", "weight"} <= set(answers.columns)
    # the 5 with no more answers than the largest k (40) are listed with the other bad rows, and written there
    bad = pd.read_csv(tmp_path / "w41.bad_rows.csv")
    assert len(bad) == 5 and (bad.field == "answers").all() and "skipped 5 malformed row(s)" in out.stdout
