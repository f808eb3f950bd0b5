"""A `ray start --head` cluster with token authentication, which a driver without its token is
told how to join, and to which `ray job submit` sends the smoke study, the route Ray's docs
recommend. (The multi-node cluster's tests, a sweep losing a node among them, are in
test_distributed_cluster.py.)"""

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import free_port, kill_processes

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.ray


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
        kill_processes(lambda args: any(str(temp) in a or a.endswith(f":{port}") for a in args))
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
               "--", "gpo", "sweep", "tune/studies/opinionqa.yaml", "--smoke-test", "--set", f"storage={storage}",
               # the first block, on OpinionQA's 500 contentious questions: embeddings in seconds on a fresh clone
               "base_models=[{model: minilm, layers: 1}]",
               "overrides=['data.questions=${GPO_DATA_DIR}/opinionqa/human_resp/Pew_American_Trends_Panel_disagreement_500/info.csv']"]
    deadline = time.time() + 300
    while True:  # the head's job agent registers a little after `ray start` returns
        submit = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        if "No available agent" not in submit.stderr or time.time() > deadline:
            break
        time.sleep(1)
    assert submit.returncode == 0 and "succeeded" in submit.stdout, (submit.stdout + submit.stderr)[-3000:]
    table = pd.read_parquet(storage / "opinionqa-arch-smoke" / "study.parquet")
    trials = table[table.kind == "trial"]
    assert len(trials) == 2 and trials.val_score.notna().all()
    assert set(trials.steps) <= {0, 2, 4}  # the smoke size (ASHA may stop one at its first validations), though train.steps is searched
    tests = table[table.kind == "test"]
    # the prior is searched: one GPO of the winning prior (gpo-paper, gpo[logit] or gpo[kernel]), as trained and shrunk
    gpo = set(tests.variant[tests.family == "gpo"])
    assert set(tests.k) == {20} and {"logit", "mean"} <= set(tests.method) and len(gpo) == 1, set(tests.method)
    assert (storage / "opinionqa-arch-smoke" / "final" / "minilm-L1-k20-seed0" / "checkpoints" / "best.pt").is_file()
