import json
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from gpo.baselines import baseline_method
from gpo.config import load_config, to_dict
from gpo.evaluate import evaluate, mean_and_worst
from gpo.inputs import prepare
from gpo.methods import gpo_features, gpo_method
from gpo.model import GPO
from gpo.pipeline import run_evaluation, run_training
from gpo.selection import validation_score
from gpo.train import context_range, load_model, train


def synthetic(tmp_path, *overrides):
    cfg = load_config("configs/synthetic.yaml", [f"out_dir={tmp_path}", *overrides])
    return cfg, prepare(cfg)


def fit(cfg, prep, validate=None):
    torch.manual_seed(cfg.train.seed)
    features = gpo_features(prep, cfg.model, {})
    model = GPO(cfg.model, features.width)
    validate = validate or (lambda m: validation_score(prep, cfg, gpo_method(m, features)))
    state = train(model, prep.points, prep.labels, prep.basis, features, prep.index(prep.split.train), validate, cfg.train,
                  cfg.run_dir / "checkpoints", to_dict(cfg), fitted={"prior_choices": {}, "feature_params": {}})
    return model, state


def test_resumed_training_equals_uninterrupted_training(tmp_path):
    common = ["train.steps=6", "train.eval_every=2", "model.dropout=0.1"]
    cfg, prep = synthetic(tmp_path, "name=straight", *common)
    straight, _ = fit(cfg, prep)

    cfg2, _ = synthetic(tmp_path, "name=resumed", *common)
    calls = []

    def interrupt_at_step_4(model):
        calls.append(1)
        if len(calls) == 3:  # validations run at steps 0, 2, 4: stop at the third
            raise KeyboardInterrupt
        return validation_score(prep, cfg2, gpo_method(model, gpo_features(prep, cfg2.model, {})))

    with pytest.raises(KeyboardInterrupt):
        fit(cfg2, prep, interrupt_at_step_4)
    assert torch.load(cfg2.run_dir / "checkpoints" / "last.pt", weights_only=False)["state"]["step"] == 2
    resumed, state = fit(cfg2, prep)
    assert state.step == 6
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    # a finished run is not trained again
    _, again = fit(cfg2, prep, lambda m: pytest.fail("a finished run validated again"))
    assert again.step == 6


def test_gpo_learns_in_context_on_the_synthetic_world(tmp_path):
    cfg, prep = synthetic(tmp_path, "train.steps=300", "train.eval_every=100", "train.lr=3.0e-3")
    _, state = fit(cfg, prep)
    model, _ = load_model(cfg.run_dir / "checkpoints" / "best.pt")
    methods = {"gpo": gpo_method(model, gpo_features(prep, cfg.model, {})), "mean": baseline_method("mean")}
    results = evaluate(methods, prep.points, prep.labels, prep.basis, prep.index(prep.split.test), prep.data.tasks, [20], 3, 0)
    summary = mean_and_worst(results).set_index("method")["mean"]
    # the mean prior cannot use the context; a GPO that reads it must beat it clearly
    assert summary["gpo"] > summary["mean"] + 0.05, summary
    assert state.best_step > 0


def test_an_ensemble_grows_from_a_finished_run_and_beats_its_average_member(tmp_path):
    common = ["name=ens", "train.steps=20", "train.eval_every=10", "eval.ks=[5]", "eval.baselines=[]", "eval.shrink.enabled=false"]
    cfg, prep = synthetic(tmp_path, *common)
    [single] = run_training(prep, cfg)
    before = single.read_bytes()
    # the validation score of what is tested: for one model, its best checkpoint's
    best = pd.read_parquet(cfg.run_dir / "train_history.parquet")["val_score"].max()
    assert json.loads((cfg.run_dir / "validation.json").read_text()) == {"method": "gpo-paper", "metric": "alignment",
                                                                          "val_score": pytest.approx(best)}
    cfg3, _ = synthetic(tmp_path, *common, "train.ensemble=3")
    paths = run_training(prep, cfg3)
    assert paths[0] == single and single.read_bytes() == before  # the finished member is not retrained
    weights = [next(iter(load_model(p)[0].state_dict().values())) for p in paths]
    assert not torch.equal(weights[1], weights[2])  # members start from different seeds
    history = pd.read_parquet(cfg3.run_dir / "train_history.parquet")
    assert sorted(history.seed.unique()) == [0, 1, 2]
    assert json.loads((cfg3.run_dir / "validation.json").read_text())["method"] == "gpo-paper-ens3"

    ensemble = run_evaluation(prep, cfg3, paths).set_index("task")
    assert set(ensemble.method) == {"gpo-paper-ens3"}
    members = pd.concat([run_evaluation(prep, cfg3, [p]) for p in paths]).groupby("task")["alignment"].mean()
    # 1 - W1 is concave in the prediction, so averaging the members' distributions scores at
    # least their average on every episode (Jensen); it would not hold for, e.g., averaged logits
    assert (ensemble["alignment"] >= members.loc[ensemble.index] - 1e-6).all()
    assert ensemble["gpo_params"].iloc[0] == 3 * load_model(paths[0])[0].n_params()


@given(st.integers(1, 50), st.integers(0, 100), st.integers(1, 1000), st.integers(0, 2000))
def test_the_context_curriculum_grows_from_the_smallest_to_the_full_range(lo, extra, length, step):
    cfg = SimpleNamespace(ctx_min=lo, ctx_max=lo + extra, ctx_curriculum=length)
    low, high = context_range(step, cfg)
    assert low == lo and lo <= high <= lo + extra
    assert high <= context_range(step + 1, cfg)[1]  # never shrinks
    assert context_range(0, cfg) == (lo, lo)
    assert context_range(length + step, cfg) == (lo, lo + extra)
    assert context_range(step, SimpleNamespace(ctx_min=lo, ctx_max=lo + extra, ctx_curriculum=0)) == (lo, lo + extra)
