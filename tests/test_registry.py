"""A baseline is one registration (gpo/registry.py): registered in a test, a toy baseline runs in
`gpo run`'s table, has its settings chosen on validation groups, serves as a residual GPO's
prior, and is a choice a study's search space accepts; a name never registered is refused."""

import pytest

from gpo.baselines import REGISTRY, mean
from gpo.config import load_config
from gpo.errors import ConfigError
from gpo.inputs import prepare
from gpo.pipeline import run
from gpo.registry import register
from gpo.selection import choose
from gpo.tune.study import load_study

TILTS = [0.0, 0.5]


@pytest.fixture
def toy():
    @register(units=("group",), prior=True, grid={"tilt": TILTS})
    def toy(points, basis, episode, tilt=0.0):  # the training groups' mean, tilted toward uniform
        return (1 - tilt) * mean(points, basis, episode) + tilt * points.uniform()

    yield
    REGISTRY.pop("toy")


def test_a_toy_baseline_runs_is_chosen_and_corrected(toy, tmp_path, capsys):
    cfg = load_config("configs/synthetic.yaml", ["eval.baselines=[mean,toy]", "model.prior=toy", "train.steps=2",
                                                  "train.eval_every=1", "eval.ks=[0,5]", "train.val_k=5", "eval.draws=1",
                                                  f"out_dir={tmp_path}"])
    results = run(cfg)
    table = capsys.readouterr().out
    assert "\ntoy " in table and "gpo[toy]" in table
    assert set(results.method) >= {"toy", "gpo[toy]", "mean"}
    assert (results.loc[results.method == "toy", "family"] == "toy").all()
    chosen = choose(prepare(cfg), cfg, "toy")
    assert {c.params["tilt"] for c in chosen.values()} <= set(TILTS)


def test_a_study_may_search_over_it_and_not_over_a_name_never_registered(toy, tmp_path):
    study = tmp_path / "study.yaml"
    body = ("name: s\nbase: configs/synthetic.yaml\nbase_models: [{{model: synthetic}}]\nval_ks: [5]\n"
            "space:\n  model.prior: {{choice: [none, {prior}]}}\n")
    study.write_text(body.format(prior="toy"))
    assert load_study(study).space["model.prior"] == {"choice": ["none", "toy"]}
    study.write_text(body.format(prior="nope"))
    with pytest.raises(ConfigError, match=r"space\.model\.prior: the choice 'nope': .*model\.prior: expected for groups one "
                                          r"of \('none', 'mean', 'mixture', 'logit', 'kernel', 'toy'\), got 'nope'$"):
        load_study(study)
