"""Sharded extraction on Ray: model replicas, data parallel over cache shards.

The same code runs on a laptop (a local Ray started here) and on a cluster
(`embed.ray_address: auto`). `embed.workers` replicas each hold the model: one actor, or
`embed.tp` tensor-parallel rank actors on one node (replica.py). A shard is a run of
consecutive questions with all their options; a replica takes shards once it has loaded
and keeps two in flight. Vectors come back to the driver, which writes each shard
atomically as it arrives, so the cache needs no shared file system and every point is
written exactly once.

Failures: a replica whose rank dies (a killed process, a lost node) or raises is killed as
a whole, its unfinished shards go back to the front of the queue for any replica, and it
is started again (wherever the cluster has room; until then the others carry on). A
replica that keeps failing without finishing a shard, or a shard that keeps crashing its
replica, stops the job after `embed.max_restarts` restarts with the replica's error. A
killed driver loses nothing already written, and a rerun computes only the missing shards.
When no replica gets a node for `embed.placement_timeout` seconds while the autoscaler starts
none (a replica larger than any node it can launch), the job stops with what the replica asked
for and what the cluster has.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from gpo.embed.cache import EmbeddingCache, Shard
from gpo.embed.extract import Stats
from gpo.embed.replica import Replica, describe, launching, plan_resources, unplaceable
from gpo.errors import GPOError
from gpo.progress import progress

log = logging.getLogger(__name__)

IN_FLIGHT_PER_WORKER = 2  # keeps each replica busy while the driver writes results
PLACEMENT_POLL_S = 1.0  # how often a driver with nothing to collect checks that some replica has a node


def init_ray(address: str = ""):
    import ray

    if not ray.is_initialized():
        check_cluster(address)
        ray.init(address=address or None, include_dashboard=False, logging_level=logging.WARNING,
                 runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}})
    return ray


def check_cluster(address: str) -> None:
    """Ask the cluster at `address` (host:port) whether it answers, and takes this machine's Ray
    token, before connecting: Ray retries an address where nothing answers for minutes, and a
    refused token for 20 s, then raises a ConnectionError. A token found here (RAY_AUTH_TOKEN,
    RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token) is then sent to a cluster that asks for one even
    when RAY_AUTH_MODE is unset, as Ray does for local clusters."""
    if address in ("", "auto", "local") or "://" in address:
        return
    from ray._private.authentication.authentication_token_setup import _enable_token_auth
    from ray._raylet import AuthenticationTokenLoader

    answer = gcs_answer(address, {})
    if answer == "silent":
        raise GPOError(f"RAY_ADDRESS={address}: no Ray cluster answers there (nothing listening, or not reachable in "
                       f"{GCS_TIMEOUT_S:g} s): start it (`ray start --head`), or unset RAY_ADDRESS for a private local Ray")
    if answer == "accepted":
        return
    token = AuthenticationTokenLoader.instance().get_token_for_http_header(ignore_auth_mode=True)
    if not token:
        raise GPOError(f"RAY_ADDRESS={address}: this cluster uses Ray's token authentication and no token was found here: "
                       "set RAY_AUTH_TOKEN to the head's token (`ray get-auth-token` on the head)")
    if gcs_answer(address, token) == "unauthenticated":
        raise GPOError(f"RAY_ADDRESS={address}: this cluster refuses the Ray token found here (RAY_AUTH_TOKEN, "
                       "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token): set RAY_AUTH_TOKEN to the head's token "
                       "(`ray get-auth-token` on the head)")
    _enable_token_auth()  # RAY_AUTH_MODE=token for this process and its children


GCS_TIMEOUT_S = 5.0


def gcs_answer(address: str, header: dict) -> str:
    """How the GCS at `address` answers a request with `header`: "accepted", "unauthenticated",
    or "silent" (no answer within GCS_TIMEOUT_S)."""
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetClusterId(
                gcs_service_pb2.GetClusterIdRequest(), timeout=GCS_TIMEOUT_S, metadata=tuple(header.items()))
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.UNAUTHENTICATED:
                return "unauthenticated"
            if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                return "silent"
    return "accepted"


@dataclass
class _Running:
    """A shard in flight on one replica: the ranks' results as they arrive."""

    shard: Shard
    results: dict = field(default_factory=dict)  # rank -> its result


def extract(cache: EmbeddingCache, shards: list[Shard], questions, cfg, on_shard_done=None) -> Stats:
    """Embed `shards` with `cfg.workers` replicas and write them into `cache`.

    questions[q] is (text, options) of question q. on_shard_done(n_done, replicas) is called
    after each shard is written; replicas[w][rank] describes that rank of replica w (its
    "pid", "node", "device", "backend", "param_bytes"), None while it loads (tests use it to
    kill a rank, a node or the driver mid-run). Timing starts at the first shard sent, so it
    excludes starting Ray and loading the replicas; the returned Stats carry the first
    loaded replica's description as extra["replica"].
    """
    # "": the cluster of a submitted job (RAY_ADDRESS), else a private local Ray, never one that
    # another process left running on this machine ("auto" joins that one on purpose)
    ray = init_ray(cfg.ray_address or os.environ.get("RAY_ADDRESS") or "local")
    res = plan_resources(ray, cfg)
    log.info("%d replica(s) x %d rank(s), each rank %s", cfg.workers, cfg.tp,
             f"{res.gpus} GPU" if res.gpus else f"{res.threads} CPU thread(s)")
    job = _Job(ray, cfg, res, cache, list(shards), questions, on_shard_done)
    try:
        total = job.run()
    finally:
        job.stop()
    wall = time.perf_counter() - (job.start or time.perf_counter())
    log.info("extraction: %s", total.summary(wall))
    return Stats(total.points, total.tokens, total.full_tokens, wall, {"replica": job.first_info})


class _Job:
    """The driver's loop: every object ref it waits on is a rank's load or a rank's shard."""

    def __init__(self, ray, cfg, res, cache, shards, questions, on_shard_done):
        self.ray, self.cfg, self.res, self.cache, self.questions = ray, cfg, res, cache, questions
        self.on_shard_done = on_shard_done
        self.pending = deque(shards)
        self.replicas: list[Replica] = []
        self.running: list[dict[int, _Running]] = []  # per replica: shard index -> _Running
        self.refs: dict = {}  # object ref -> (replica slot, rank, shard index or None for a load)
        self.failures, self.shard_failures = Counter(), Counter()
        self.total, self.done, self.start, self.first_info = Stats(), 0, None, None
        self.stalled = None  # since when no replica has had a node while the autoscaler started none
        for slot in range(cfg.workers):
            self.replicas.append(None)
            self.running.append({})
            self._start(slot)

    def _start(self, slot: int) -> None:
        replica = Replica(self.ray, self.cfg, self.res)
        self.replicas[slot] = replica
        for rank, ref in enumerate(replica.loading):
            self.refs[ref] = (slot, rank, None)

    def run(self) -> Stats:
        from ray.exceptions import RayError

        n_points = sum(len(s.points) for s in self.pending)
        with progress(total=n_points, desc=f"embed {self.cfg.model} x{self.cfg.workers}", unit="pt") as bar:
            self.bar = bar
            while self.pending or any(self.running):
                ready, _ = self.ray.wait(list(self.refs), num_returns=1, timeout=PLACEMENT_POLL_S)
                if not ready:
                    self._check_placement()
                    continue
                [ref] = ready
                slot, rank, index = self.refs.pop(ref)
                try:
                    value = self.ray.get(ref)
                except RayError as e:
                    self._failed(slot, e)
                    continue
                if index is None:
                    self._loaded(slot, rank, value)
                else:
                    self._returned(slot, rank, index, value)
        return self.total

    def _check_placement(self) -> None:
        """End the job when no replica's ranks have had a node for embed.placement_timeout seconds
        while the autoscaler started none: a placement group nothing can take waits forever.
        Time spent while nodes are launched or set up does not count (minutes on a cloud)."""
        if any(r.ready or r.placed() for r in self.replicas):
            self.stalled = None
            return
        starting, failed = launching(self.ray)
        now = time.monotonic()
        if starting or self.stalled is None:
            self.stalled = now
        elif now - self.stalled > self.cfg.placement_timeout:
            raise GPOError(unplaceable(self.ray, self.cfg, self.res, failed))

    def _loaded(self, slot: int, rank: int, info: dict) -> None:
        replica = self.replicas[slot]
        replica.info[rank] = info
        if replica.ready:
            self.first_info = self.first_info or replica.info
            self._feed(slot)

    def _returned(self, slot: int, rank: int, index: int, value) -> None:
        running = self.running[slot][index]
        running.results[rank] = value
        if len(running.results) < self.cfg.tp:
            return
        del self.running[slot][index]
        vectors, stats = running.results[0]
        self.cache.write(running.shard, vectors)
        self.total, self.done = self.total + stats, self.done + 1
        self.failures[slot] = 0
        self.bar.update(len(running.shard.points))
        self._feed(slot)
        if self.on_shard_done is not None:
            self.on_shard_done(self.done, [list(r.info) for r in self.replicas])

    def _feed(self, slot: int) -> None:
        replica = self.replicas[slot]
        while self.pending and len(self.running[slot]) < IN_FLIGHT_PER_WORKER:
            shard = self.pending.popleft()
            self.start = self.start or time.perf_counter()
            self.running[slot][shard.index] = _Running(shard)
            for rank, ref in enumerate(replica.embed([self.questions[q] for q in shard.questions])):
                self.refs[ref] = (slot, rank, shard.index)

    def _failed(self, slot: int, error: BaseException) -> None:
        """Kill the whole replica, requeue its shards first in line, start it again (bounded)."""
        self.replicas[slot].stop()
        for ref in [ref for ref, owner in self.refs.items() if owner[0] == slot]:
            del self.refs[ref]
        lost = [r.shard for r in self.running[slot].values()]
        self.running[slot] = {}
        self.pending.extendleft(reversed(lost))
        self.failures[slot] += 1
        self.shard_failures.update(s.index for s in lost)
        cause, limit = describe(error), self.cfg.max_restarts
        if self.failures[slot] > limit:
            raise GPOError(f"embedding replica {slot} of {self.cfg.model} failed {self.failures[slot]} times in a row "
                           f"(embed.max_restarts={limit}); last error: {cause}")
        worst = max(lost, key=lambda s: self.shard_failures[s.index], default=None)
        if worst is not None and self.shard_failures[worst.index] > limit:
            raise GPOError(f"shard {worst.index} (questions {worst.questions.start}-{worst.questions.stop - 1}) was lost "
                           f"with its replica {self.shard_failures[worst.index]} times (embed.max_restarts={limit}); "
                           f"last error: {cause}")
        log.warning("replica %d failed (%s); %d shard(s) requeued, restarting it (%d of %d)",
                    slot, cause, len(lost), self.failures[slot], limit)
        self._start(slot)
        for other, replica in enumerate(self.replicas):  # an idle replica takes the requeued shards now
            if replica.ready:
                self._feed(other)

    def stop(self) -> None:
        for replica in self.replicas:
            if replica is not None:
                replica.stop()
