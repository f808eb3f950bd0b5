import pytest

from gpo.config import ExperimentConfig, load_config, save_config
from gpo.errors import ConfigError


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ntrain:\n  steps: 10\n  lr: 1\nmodel:\n  d_model: 64\n")
    cfg = load_config(path, ["train.steps=20", "data.groups=[A, B]", "eval.ks=[5]"])
    assert cfg.name == "x" and cfg.train.steps == 20 and cfg.model.d_model == 64
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.data.groups == ["A", "B"] and cfg.eval.ks == [5]
    assert cfg.model.n_layers == ExperimentConfig().model.n_layers  # untouched default


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["train.steps=7", "data.synthetic.n_groups=9"])
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


@pytest.mark.parametrize("override, message", [
    ("train.stepz=5", r"unknown key\(s\) \['train.stepz'\]"),
    ("train.steps=many", r"train.steps: expected int, got 'many'"),
    ("model.dropout=[1]", r"model.dropout: expected float"),
    ("steps", r"expected key=value"),
])
def test_bad_keys_and_types_are_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_every_shipped_config_loads():
    from pathlib import Path

    for path in sorted((Path(__file__).parents[1] / "configs").glob("*.yaml")):
        load_config(path)


@pytest.mark.parametrize("old, said", [
    ("shrink: false", "eval.shrink: false is an old spelling: use eval.shrink.enabled=false"),
    ("shrink_per_task: false", "eval.shrink_per_task: an old spelling: use eval.shrink.per_task"),
    ("per_task_se: 0.5", "eval.per_task_se: an old spelling: use eval.shrink.per_task_se"),
    ("shrink_training_floor: false", "eval.shrink_training_floor: an old spelling: use eval.shrink.training_floor")])
def test_the_shrink_policys_old_flat_keys_are_refused_naming_the_new_one(tmp_path, old, said):
    (tmp_path / "config.yaml").write_text(f"eval:\n  {old}\n  draws: 2\n")
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "config.yaml")
    assert str(e.value) == f"{tmp_path / 'config.yaml'}: {said}"
    assert load_config(None, ["eval.shrink.enabled=false"]).eval.shrink.enabled is False


def test_an_exponent_without_a_dot_is_a_float_where_a_float_is_expected():
    assert load_config("configs/demo.yaml", ["train.lr=3e-3", "model.dropout=1E-1"]).train.lr == 0.003
    with pytest.raises(ConfigError, match=r"train.lr: expected float, got '3e-3x'"):
        load_config("configs/demo.yaml", ["train.lr=3e-3x"])
