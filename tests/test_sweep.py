import contextlib
import functools
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml

from gpo.config import in_project
from gpo.errors import ConfigError
from gpo.tune.study import BaseModel, load_study
from gpo.tune.sweep import smoke

ROOT = Path(__file__).resolve().parents[1]


def test_the_kuberay_rayjob_runs_a_shipped_gpu_study_into_a_bucket():
    """KubeRay cannot run here: this pins the RayJob to the `ray job submit` route it mirrors."""
    job = yaml.safe_load((ROOT / "cluster" / "kuberay-rayjob.yaml").read_text())["spec"]
    command = shlex.split(job["entrypoint"])
    assert command[:2] == ["gpo", "sweep"] and command[3] == "--set"
    study = load_study(command[2], command[4:])
    assert study.resources.gpu > 0 and str(study.root).startswith("s3://")
    workers = job["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert workers["resources"]["limits"]["nvidia.com/gpu"] == "1"


@pytest.mark.parametrize("name, gpu", [("opinionqa.yaml", 0), ("opinionqa-gpu.yaml", 0.25), ("individual.yaml", 0)])
def test_shipped_studies_load(name, gpu):
    study = load_study(ROOT / "tune" / "studies" / name)
    assert study.base_models[0].model == "minilm" and study.budget.searcher == "optuna"
    assert {"train.ctx_min", "train.ctx_max", "model.d_model", "model.n_layers", "train.lr"} <= set(study.space)
    assert study.resources.gpu == gpu


def test_paths_in_a_study_resolve_against_the_project_not_the_working_directory(tmp_path, monkeypatch):
    """`ray submit` runs `python ~/sweep.py tune/studies/opinionqa.yaml` from the home folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GPO_DATA_DIR", raising=False)
    study = load_study("tune/studies/opinionqa.yaml")
    assert Path(str(study.root)) == (ROOT / "runs" / "sweeps" / "opinionqa-arch").resolve()
    cfg = study.experiment(study.base_models[0], 20)
    data = ROOT.parent / "shared" / "data" / "opinionqa" / "group_distributions.jsonl.gz"
    assert Path(cfg.data.resolved_source()) == data.resolve()
    assert in_project(cfg.embed.cache_dir) == (ROOT / ".cache" / "embeddings").resolve()
    with pytest.raises(ConfigError, match="study file not found"):
        load_study("tune/studies/nope.yaml")


def test_a_symlinked_data_folder_is_the_same_data(shared_data, tmp_path, monkeypatch):
    (tmp_path / "data").symlink_to(shared_data, target_is_directory=True)
    monkeypatch.setenv("GPO_DATA_DIR", str(tmp_path / "data"))
    cfg = load_study("tune/studies/opinionqa.yaml").experiment(BaseModel(), 20)
    assert Path(cfg.data.resolved_source()).samefile(shared_data / "opinionqa" / "group_distributions.jsonl.gz")


def test_the_smoke_test_clamps_searched_step_counts():
    study = smoke(load_study(ROOT / "tune" / "studies" / "opinionqa.yaml"))
    assert study.space["train.steps"] == {"choice": [4]}
    cfg = study.experiment(study.base_models[0], 20, {"train.steps": 4})
    assert cfg.train.steps == 4 and cfg.train.eval_every == 2 and study.budget.num_samples == 2


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
  train.steps: {{choice: [4, 6]}}
budget: {{num_samples: 3, max_concurrent: 1, grace_period: 4, seed: 1}}
storage: {storage}
"""


def final_runs(pid: int) -> list[psutil.Process]:
    """The Ray workers under process `pid` that are running a final run."""
    def running(p: psutil.Process) -> bool:
        with contextlib.suppress(psutil.Error):
            return " ".join(p.cmdline()).startswith("ray::final_run")
        return False

    return [p for p in psutil.Process(pid).children(recursive=True) if running(p)]


def wait_for(condition, process, what: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert process.poll() is None, process.stderr.read()[-3000:]
        assert time.time() < deadline, what
        time.sleep(0.1)


@pytest.mark.ray
def test_an_interrupted_sweep_resumes_without_losing_or_rerunning_trials(tmp_path):
    """Ctrl-C during the search, then Ctrl-C during the final run (after Tune has finished, when
    its own handler once swallowed it): each stops the sweep; --resume finishes it with every
    trial run once."""
    study = tmp_path / "study.yaml"
    study.write_text(STUDY.format(base=ROOT / "configs" / "synthetic.yaml", storage=tmp_path / "sweeps"))
    root = tmp_path / "sweeps" / "resume"
    search = root / "search" / "synthetic-k5"
    cmd = [sys.executable, str(ROOT / "tune" / "sweep.py"), str(study)]
    # a private Ray: without an address a sweep joins a `ray start` cluster running on this
    # machine (as on a cluster's head), and another test suite's cluster may come and go there
    env = dict(os.environ, RAY_ADDRESS="local")
    # and Ctrl-C as at a terminal: a child inherits an ignored SIGINT, and some earlier test in the
    # suite leaves this process ignoring it (Python then keeps ignoring it once the search is over)
    terminal = functools.partial(signal.signal, signal.SIGINT, signal.SIG_DFL)
    first = subprocess.Popen(cmd, cwd=tmp_path, env=env, preexec_fn=terminal, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    # one trial at a time: a second means the first finished
    wait_for(lambda: len(list(search.glob("trial_*"))) >= 2, first, "the sweep did not start its second trial")
    first.send_signal(signal.SIGINT)  # Ctrl-C
    assert first.wait(timeout=120) == 130, first.stderr.read()[-3000:]
    assert "continue with --resume" in first.stderr.read()
    assert not (root / "study.parquet").exists()  # nothing ran on a partial search
    # Finished means finished in the state Tune saved on Ctrl-C; a trial whose last report was in
    # flight at that moment is unfinished there and continues from its last checkpoint.
    from ray.tune import ExperimentAnalysis

    finished = [Path(t.path) for t in ExperimentAnalysis(str(search)).trials if t.status == "TERMINATED"]
    assert finished, "no trial had finished before the interruption"
    before = {d.name: (d / "result.json").read_text() for d in finished}

    second = subprocess.Popen([*cmd, "--resume"], cwd=tmp_path, env=env, preexec_fn=terminal, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    # the final run's worker is frozen as soon as it starts, so the Ctrl-C surely lands while it
    # runs (a small run could otherwise finish first); its Ray is the driver's own, a descendant
    running = []
    wait_for(lambda: running.extend(final_runs(second.pid)) or running, second, "the final run did not start")
    for p in running:
        p.suspend()
    try:
        second.send_signal(signal.SIGINT)
        assert second.wait(timeout=120) == 130, second.stderr.read()[-3000:]
    finally:
        for p in running:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
    assert "continue with --resume" in second.stderr.read()
    assert not (root / "study.parquet").exists()

    out = subprocess.run([*cmd, "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    for name, text in before.items():  # finished trials were neither lost nor run again
        assert (search / name / "result.json").read_text() == text
    table = pd.read_parquet(root / "study.parquet")
    trials = table[table.kind == "trial"]
    assert len(trials) == 3 and trials.val_score.notna().all()
    # a trial that ran its own (searched) train.steps to the end is completed, whichever it drew
    assert set(trials.steps) == {4, 6} and set(trials.status) == {"completed"}
    assert "trials 3 completed, 0 stopped early, 0 failed" in out.stdout
    tests = table[table.kind == "test"]
    assert set(tests.method) >= {"gpo-paper", "gpo-paper+shrink", "mean", "mixture"} and set(tests.k) == {5}
