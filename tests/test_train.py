import pytest
import torch

from gpo.config import load_config, to_dict
from gpo.evaluate import baseline_method, evaluate, gpo_method, summarise
from gpo.model import GPO
from gpo.pipeline import prepare, validation_score
from gpo.train import load_model, train


def synthetic(tmp_path, *overrides):
    cfg = load_config("configs/synthetic.yaml", [f"out_dir={tmp_path}", *overrides])
    return cfg, prepare(cfg)


def fit(cfg, prep, validate=None):
    torch.manual_seed(cfg.train.seed)
    model = GPO(cfg.model, prep.points.x.shape[1])
    validate = validate or (lambda m: validation_score(prep, cfg, gpo_method(m)))
    state = train(model, prep.points, prep.basis, prep.index(prep.split.train), validate, cfg.train, cfg.run_dir, to_dict(cfg))
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
        return validation_score(prep, cfg2, gpo_method(model))

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
    cfg, prep = synthetic(tmp_path, "train.steps=800", "train.eval_every=200")
    _, state = fit(cfg, prep)
    model, _ = load_model(cfg.run_dir / "checkpoints" / "best.pt")
    methods = {"gpo": gpo_method(model), "mean": baseline_method("mean")}
    results = evaluate(methods, prep.points, prep.basis, prep.index(prep.split.test), prep.data.groups, [20], 3, 0)
    summary = summarise(results).set_index("method")["mean"]
    # the mean prior cannot use the context; a GPO that reads it must beat it clearly
    assert summary["gpo"] > summary["mean"] + 0.05, summary
    assert state.best_step > 0
