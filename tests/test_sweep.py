import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pandas as pd
import pytest
import yaml

from gpo.errors import ConfigError
from gpo.tune.study import load_study

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["cluster.yaml", "local.yaml"])
def test_cluster_yaml_matches_rays_schema(name):
    import ray

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = yaml.safe_load((ROOT / "cluster" / name).read_text())
    jsonschema.validate(config, schema)
    broken = dict(config, provider={"typo": "aws"})
    with pytest.raises(jsonschema.ValidationError):  # the check can fail
        jsonschema.validate(broken, schema)


def test_shipped_study_loads():
    study = load_study(ROOT / "tune" / "studies" / "opinionqa.yaml")
    assert study.base_models[0].model == "minilm" and study.budget.searcher == "optuna"
    assert {"train.ctx_min", "train.ctx_max", "model.d_model", "model.n_layers", "train.lr"} <= set(study.space)


@pytest.mark.parametrize("text, message", [
    ("space: {model.d_model: {between: [1, 2]}}", "expected one of"),
    ("space: {model.widht: {choice: [1, 2]}}", "not an experiment config key"),
    ("budgett: {}", "unknown key"),
    ("overrides: [train.ensemble=3]", "one model per trial"),
])
def test_bad_studies_are_errors(tmp_path, text, message):
    path = tmp_path / "s.yaml"
    path.write_text(f"base: {ROOT / 'configs' / 'synthetic.yaml'}\n{text}\n")
    with pytest.raises(ConfigError, match=message):
        load_study(path)


STUDY = """
name: resume
base: {base}
overrides: [train.steps=6, train.eval_every=2, eval.draws=1, "eval.ks=[5]"]
base_models: [{{model: synthetic}}]
val_ks: [5]
seeds: [0]
space:
  model.d_model: {{choice: [16, 32]}}
  train.lr: {{loguniform: [1.0e-4, 3.0e-3]}}
budget: {{num_samples: 3, max_concurrent: 1, grace_period: 4}}
storage: {storage}
"""


def test_an_interrupted_sweep_resumes_without_losing_or_rerunning_trials(tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text(STUDY.format(base=ROOT / "configs" / "synthetic.yaml", storage=tmp_path / "sweeps"))
    search = tmp_path / "sweeps" / "resume" / "search" / "synthetic-k5"
    cmd = [sys.executable, str(ROOT / "tune" / "sweep.py"), str(study)]
    first = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while len(list(search.glob("trial_*"))) < 2:  # one trial at a time: a second means the first finished
        assert first.poll() is None, first.stderr.read()[-3000:]
        assert time.time() < deadline, "the sweep did not start its second trial"
        time.sleep(0.5)
    first.send_signal(signal.SIGINT)  # Ctrl-C
    assert first.wait(timeout=120) == 130, first.stderr.read()[-3000:]
    assert not (tmp_path / "sweeps" / "resume" / "study.parquet").exists()  # nothing ran on a partial search
    # Finished means finished in the state Tune saved on Ctrl-C; a trial whose last report was in
    # flight at that moment is unfinished there and continues from its last checkpoint.
    from ray.tune import ExperimentAnalysis

    finished = [Path(t.path) for t in ExperimentAnalysis(str(search)).trials if t.status == "TERMINATED"]
    assert finished, "no trial had finished before the interruption"
    before = {d.name: (d / "result.json").read_text() for d in finished}

    out = subprocess.run([*cmd, "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    for name, text in before.items():  # finished trials were neither lost nor run again
        assert (search / name / "result.json").read_text() == text
    table = pd.read_parquet(tmp_path / "sweeps" / "resume" / "study.parquet")
    trials = table[table.kind == "trial"]
    assert len(trials) == 3 and trials.val_alignment.notna().all()
    tests = table[table.kind == "test"]
    assert set(tests.method) >= {"gpo", "mean", "mixture"} and set(tests.k) == {5}
    assert "trials 3 completed" in out.stdout or "stopped early" in out.stdout
