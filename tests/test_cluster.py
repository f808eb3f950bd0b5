"""Sweeps on real Ray clusters started by the tests: a multi-node cluster (a head and worker
raylets on this machine) with study storage on an S3-compatible server started here (moto's
server mode, over HTTP), where a worker node is killed mid-trial and the sweep must finish
without losing or restarting anything; and a `ray start --head` cluster with token
authentication, which a driver without its token is told how to join, and to which `ray job
submit` sends the smoke study, the route Ray's docs recommend."""

import contextlib
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import psutil
import pyarrow.fs as pafs
import pytest
from helpers import free_port

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "gpo-test"


@pytest.fixture
def s3(monkeypatch):
    """An S3 server on 127.0.0.1 with one bucket; the storage URI prefix that reaches it."""
    from moto.server import ThreadedMotoServer

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)  # inherited by the Ray nodes started after this, and their workers
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    pafs.S3FileSystem(endpoint_override=f"{host}:{port}", scheme="http", allow_bucket_creation=True).create_dir(BUCKET)
    yield lambda path: f"s3://{BUCKET}/{path}?endpoint_override={host}:{port}&scheme=http"
    server.stop()


@pytest.fixture
def cluster():
    """A head that runs nothing (0 CPUs) and two one-CPU worker nodes."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    yield cluster, workers
    cluster.shutdown()


def checkpointed_trials(fs: pafs.FileSystem, search: str, past: int) -> int:
    """Trials of the search whose latest checkpoint index is at least `past`."""
    try:
        trials = [i for i in fs.get_file_info(pafs.FileSelector(search)) if i.base_name.startswith("trial_")]
    except (FileNotFoundError, OSError):
        return 0
    n = 0
    for t in trials:
        names = [i.base_name for i in fs.get_file_info(pafs.FileSelector(t.path)) if i.base_name.startswith("checkpoint_")]
        n += any(int(name.split("_")[1]) >= past for name in names)
    return n


STUDY = """
name: node-loss
base: {base}
overrides: [train.steps=120, train.eval_every=10, eval.draws=1, "eval.ks=[5]", train.batch_groups=4]
base_models: [{{model: synthetic}}]
val_ks: [5]
seeds: [0]
space:
  model.d_model: {{choice: [16, 32]}}
  train.lr: {{loguniform: [1.0e-4, 3.0e-3]}}
budget: {{num_samples: 3, max_concurrent: 2, grace_period: 13, max_failures: 2}}
storage: {storage}
"""


def test_a_sweep_survives_losing_a_worker_node_mid_trial(tmp_path, s3, cluster):
    """Both worker nodes run a trial; one node is killed after its trial's second checkpoint.
    The trial is retried on the surviving node from that checkpoint (its history never goes
    back to step 0), every trial and the final run land in S3, and nothing says interrupted."""
    from ray.tune import ExperimentAnalysis

    cluster, workers = cluster
    storage = s3("sweeps")
    study = tmp_path / "study.yaml"
    study.write_text(STUDY.format(base=ROOT / "configs" / "synthetic.yaml", storage=storage))
    fs, root = pafs.FileSystem.from_uri(storage)
    search = f"{root}/node-loss/search/synthetic-k5"
    env = dict(os.environ, RAY_ADDRESS=cluster.address)
    sweep = subprocess.Popen([sys.executable, str(ROOT / "tune" / "sweep.py"), str(study)], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while checkpointed_trials(fs, search, 1) < 2:  # both running trials are past step 10
            assert sweep.poll() is None, sweep.communicate()[1][-3000:]
            assert time.time() < deadline, "the trials never reached their second checkpoint"
            time.sleep(0.2)
        cluster.remove_node(workers[0], allow_graceful=False)
        out, err = sweep.communicate(timeout=600)
    finally:
        sweep.kill()
    assert sweep.returncode == 0, err[-3000:]
    assert "interrupted" not in err + out

    table = pd.read_parquet(f"{root}/node-loss/study.parquet", filesystem=fs)
    trials = table[table.kind == "trial"]
    assert len(trials) == 3 and trials.val_score.notna().all()
    assert set(trials.status) == {"completed"} and set(trials.steps) == {120}
    for history in trials.history.map(json.loads):  # each trial trained once: steps 0, 10, ..., 120, never back to 0
        steps = history["step"]
        # a validation reported as the node died may be redone from the checkpoint before it,
        # so a step can repeat; a restart would go back
        assert steps == sorted(steps) and set(steps) == set(range(0, 121, 10)), steps
    failures = {t.trial_id: t.run_metadata.num_failures for t in ExperimentAnalysis(search, storage_filesystem=fs).trials}
    assert sorted(failures.values()) == [0, 0, 1]  # the trial on the killed node, retried once
    assert set(table[table.kind == "test"].method) >= {"gpo-paper", "mean"}
    final = fs.get_file_info(pafs.FileSelector(f"{root}/node-loss/final/synthetic-k5-seed0", recursive=True))
    assert {"results.parquet", "best.pt", "last.pt", "config.yaml"} <= {i.base_name for i in final}


@pytest.fixture(scope="module")
def head_node():
    """`ray start --head` in its own temp dir (short: Ray's socket paths are bounded), with the
    virtual environment on PATH as on a cluster node and a token of its own (Ray's token
    authentication, on by default); stopped by killing exactly the processes that name its temp dir
    or its GCS address (a bare `ray stop` would stop every Ray of this user)."""
    temp = Path(tempfile.mkdtemp(prefix="gpo-ray-", dir="/tmp"))
    port, dashboard = free_port(), free_port()
    # every port of its own: the defaults (client server 10001, agent 52365, ...) may be taken
    # by another Ray on the machine, and a job agent that cannot bind never becomes available
    ports = [f"--{name}-port={free_port()}" for name in ("ray-client-server", "dashboard-agent-listen", "dashboard-agent-grpc",
                                                         "runtime-env-agent", "metrics-export", "node-manager", "object-manager")]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    ray = str(Path(sys.executable).parent / "ray")
    try:
        start = subprocess.run([ray, "start", "--head", f"--port={port}", "--include-dashboard=true",
                                f"--dashboard-port={dashboard}", *ports, "--num-cpus=2", f"--temp-dir={temp}",
                                "--disable-usage-stats"],
                               env=env, capture_output=True, text=True, timeout=120)
        assert start.returncode == 0, start.stderr[-3000:]
        yield {"dashboard": f"http://127.0.0.1:{dashboard}", "gcs": f"127.0.0.1:{port}", "env": env}
    finally:
        # its processes name its temp dir or end an argument with its GCS port (the Ray client server)
        def ours(args: list[str]) -> bool:
            return any(str(temp) in a or a.endswith(f":{port}") for a in args)

        mine = [p for p in psutil.process_iter(["cmdline"]) if ours(p.info["cmdline"] or [])]
        for p in mine:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.terminate()
        _, alive = psutil.wait_procs(mine, timeout=5)
        for p in alive:
            p.kill()
        shutil.rmtree(temp, ignore_errors=True)


def test_a_driver_without_the_clusters_token_is_told_what_to_set(tmp_path, head_node):
    """RAY_ADDRESS of a cluster with token authentication and no token here: one line naming
    what to set, at once (Ray alone retries for 20 s, then raises a ConnectionError); with the
    head's token in ~/.ray/auth_token the driver joins though RAY_AUTH_MODE is unset."""
    env = {k: v for k, v in head_node["env"].items() if k not in ("RAY_AUTH_TOKEN", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}
    env.update(HOME=str(tmp_path), RAY_ADDRESS=head_node["gcs"])  # a home without ~/.ray/auth_token
    gpo = str(Path(sys.executable).parent / "gpo")
    out = subprocess.run([gpo, "sweep", "tune/studies/opinionqa.yaml", "--smoke-test"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    said = [line for line in out.stderr.splitlines() if line.startswith("gpo sweep:")]
    assert out.returncode == 2 and "InvalidAuthToken" not in out.stderr, out.stderr[-3000:]
    assert said == [f"gpo sweep: error: RAY_ADDRESS={head_node['gcs']}: this cluster uses Ray's token authentication and "
                    "no token was found here: set RAY_AUTH_TOKEN to the head's token (`ray get-auth-token` on the head)"]
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text(head_node["env"]["RAY_AUTH_TOKEN"])
    join = f"from gpo.embed.distributed import init_ray; print('CPUs', init_ray({head_node['gcs']!r}).cluster_resources()['CPU'])"
    out = subprocess.run([sys.executable, "-c", join], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "CPUs 2.0" in out.stdout, out.stderr[-3000:]


def test_ray_job_submit_runs_the_smoke_study_from_a_copy_of_the_project(tmp_path, shared_data, head_node):
    """The documented jobs route: the project uploaded as the job's working dir, the sweep run by
    the `gpo` command on the cluster; the study and its base config are found in the copy, the
    data beside the installed project, and the results land in the storage given."""
    address, env = head_node["dashboard"], head_node["env"]
    storage = tmp_path / "sweeps"
    command = [str(Path(sys.executable).parent / "ray"), "job", "submit", "--address", address, "--working-dir", str(ROOT),
               "--", "gpo", "sweep", "tune/studies/opinionqa.yaml", "--smoke-test", "--set", f"storage={storage}"]
    deadline = time.time() + 300
    while True:  # the head's job agent registers a little after `ray start` returns
        submit = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        if "No available agent" not in submit.stderr or time.time() > deadline:
            break
        time.sleep(5)
    assert submit.returncode == 0 and "succeeded" in submit.stdout, (submit.stdout + submit.stderr)[-3000:]
    table = pd.read_parquet(storage / "opinionqa-arch-smoke" / "study.parquet")
    trials = table[table.kind == "trial"]
    assert len(trials) == 2 and trials.val_score.notna().all()
    assert set(trials.steps) <= {2, 4}  # the smoke size (ASHA may stop one at step 2), though train.steps is searched
    tests = table[table.kind == "test"]
    assert set(tests.k) == {20} and {"gpo[logit]", "logit", "mean"} <= set(tests.method)
    assert (storage / "opinionqa-arch-smoke" / "final" / "minilm-k20-seed0" / "checkpoints" / "best.pt").is_file()
