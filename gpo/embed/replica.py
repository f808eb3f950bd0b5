"""One model replica on Ray: `embed.tp` actors, one per tensor-parallel rank, on one node.

tp = 1 is a single actor running the model alone. With tp > 1 every actor is a rank of its
own torch.distributed group (gloo on CPU, NCCL on GPU) and runs DeepSpeed's automatic tensor
parallelism (`init_inference(tensor_parallel={"tp_size": tp})`): each rank holds a slice of
every attention and MLP projection, and the partial results are summed across ranks. The
ranks sit in a STRICT_PACK placement group (one node: DeepSpeed's CPU all-reduce goes through
shared memory, and NCCL is fastest within a node); the driver hands them their rendezvous,
rank 0's node address and a port free there. Every rank runs every batch on the same inputs
(the packed prefix-sharing rows included) and rank 0 returns the vectors.

A rank's failure leaves its peers blocked in a collective, so a replica lives and dies as a
unit: the actors are never restarted by Ray (`max_restarts=0`); the driver (distributed.py)
kills the remaining ranks and starts a whole new replica.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from gpo.errors import GPOError


@dataclass(frozen=True)
class RankResources:
    """What each rank asks Ray for (GPUs are requested explicitly, so an autoscaler sees them)."""

    cpus: int
    gpus: int
    threads: int  # torch intra-op threads

    def bundle(self) -> dict:
        return {"CPU": self.cpus, "GPU": self.gpus} if self.gpus else {"CPU": self.cpus}


def check_config(cfg) -> None:
    """What the model cannot do with these settings, reported before Ray starts or any model
    loads (the settings' own ranges are checked with the config)."""
    if cfg.tp > 1:
        check_autotp(cfg.model, cfg.tp, cfg.layers)


def check_autotp(model: str, tp: int, layers: int = 0) -> None:
    """What DeepSpeed's automatic tensor parallelism cannot do with this model, checked on its
    config and a weightless copy: families on DeepSpeed's own refusal list (GPT-2 among them),
    and fewer key/value heads than ranks (AutoTP splits attention by key/value head, so a rank
    would get none, which fails under the attention masks extraction uses)."""
    from deepspeed.module_inject.auto_tp import AutoTP

    from gpo.embed.models import weightless

    net = weightless(model, layers)
    config = net.config
    try:
        supported = AutoTP.supported(net)
    except AssertionError:
        supported = False
    if not supported:
        raise GPOError(f"model {model!r} ({config.model_type}): DeepSpeed's automatic tensor parallelism does not support "
                       "this family; use embed.tp=1")
    heads = getattr(config, "num_attention_heads", None)
    kv_heads = 1 if getattr(config, "multi_query", False) else getattr(config, "num_key_value_heads", None) or heads
    if kv_heads is not None and kv_heads < tp:
        raise GPOError(f"model {model!r} has {kv_heads} key/value head(s): DeepSpeed's tensor parallelism splits attention "
                       f"by key/value head, so embed.tp={tp} would leave a rank without one; use embed.tp <= {kv_heads}")


def plan_resources(ray, cfg) -> RankResources:
    """Each rank's request, from the config alone for GPUs (`embed.device`), checked against the
    nodes the cluster has or its autoscaler can add: a replica whose ranks cannot share any
    node is an error here, before any model loads."""
    live, nodes, autoscaler = node_shapes(ray)
    has_gpus = any(n.get("GPU", 0) > 0 for n in nodes)
    gpus = 1 if cfg.device.startswith("cuda") or (cfg.device == "auto" and has_gpus) else 0  # Ray picks which GPU
    threads = cfg.threads or default_threads(live, nodes, cfg.workers, cfg.tp)
    res = RankResources(cpus=1 if gpus else threads, gpus=gpus, threads=threads)
    need = {k: v * cfg.tp for k, v in res.bundle().items()}
    if autoscaler == "unknown node types" or any(all(n.get(k, 0) >= v for k, v in need.items()) for n in nodes):
        return res
    raise GPOError(f"embed.tp={cfg.tp}: a replica's ranks must share one node and together need {count(need, need)} "
                   f"({count(res.bundle(), need)} per rank, embed.device={cfg.device}); the largest node"
                   f"{' or node type' if autoscaler else ''} has {count(largest(nodes))} "
                   "(lower embed.tp or embed.threads, change embed.device, or add a larger node type)")


def unplaceable(ray, cfg, res: RankResources, failed: list[str]) -> str:
    """Why a replica still waits for a node after embed.placement_timeout: what its ranks asked
    for, what the cluster has or can launch, and the autoscaler's failed launches, in one line."""
    _, nodes, autoscaler = node_shapes(ray)
    need = {k: v * cfg.tp for k, v in res.bundle().items()}
    ranks = f"{cfg.tp} ranks on one node, {count(res.bundle(), need)} each" if cfg.tp > 1 else count(need, need)
    has = f"the largest node{' or node type' if autoscaler == 'node types' else ''} has {count(largest(nodes))}"
    unknown = ", and the autoscaler does not publish the node types it can launch" if autoscaler == "unknown node types" else ""
    failures = f"; failed launches: {'; '.join(failed)}" if failed else ""
    return (f"embed.tp={cfg.tp}, embed.device={cfg.device}: no node took a replica ({ranks}) within "
            f"embed.placement_timeout={cfg.placement_timeout:g} s while the cluster started no node for it; "
            f"{has}{unknown}{failures} "
            "(lower embed.tp or embed.threads, change embed.device, add a node type that fits, or raise embed.placement_timeout)")


def default_threads(live: list[dict], nodes: list[dict], workers: int, tp: int) -> int:
    """CPU threads per rank when embed.threads is 0. Ray spreads the replicas over the nodes
    that have CPUs, so as many share a node as there are replicas per node; their ranks split
    the largest node (or node type) between them, so every replica fits one node whatever the
    cluster's total (a cluster of small nodes, or a head that runs nothing)."""
    per_node = -(-workers // max(1, sum(n.get("CPU", 0) > 0 for n in live)))
    cpus = max((n.get("CPU", 0) for n in nodes), default=0)
    return max(1, int(cpus) // (per_node * tp))


def largest(nodes: list[dict]) -> dict:
    return max(nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)), default={})


def count(resources: dict, kinds=("CPU", "GPU")) -> str:
    """"2 CPUs and 1 GPU": the amounts of `kinds` in `resources`."""
    return " and ".join(f"{resources.get(k, 0):g} {k}{'s' if resources.get(k, 0) != 1 else ''}" for k in kinds)


def node_shapes(ray) -> tuple[list[dict], list[dict], str]:
    """Total resources of each live node; the same plus each node type an autoscaler may still
    launch; and what is known of the autoscaler: "" (none), "node types" (Ray's v2 autoscaler
    publishes them) or "unknown node types" (the v1 autoscaler, which publishes only its status)."""
    from ray._private.state import state
    from ray.autoscaler._private.util import format_readonly_node_type

    live = [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]
    config = state.get_cluster_config()
    if config is not None:
        return live, live + [dict(g.resources) for g in config.node_group_configs if g.max_count != 0], "node types"
    # Without an autoscaling config the v1 monitor runs a read-only provider whose node types are
    # its nodes' ids; named node types mean an autoscaler that may add nodes.
    types = v1_report().get("node_type_mapping") or {}
    if any(kind != format_readonly_node_type(node) for node, kind in types.items()):
        return live, live, "unknown node types"
    return live, live, ""


def v1_report() -> dict:
    """The v1 autoscaler's last status report ({} without one)."""
    import json

    from ray.experimental.internal_kv import _internal_kv_get

    status = _internal_kv_get("__autoscaling_status")
    return (json.loads(status).get("autoscaler_report") if status else None) or {}


def launching(ray) -> tuple[bool, list[str]]:
    """Whether the autoscaler is starting nodes now (launches requested, or nodes booting or
    being set up, which on a cloud takes minutes), and its recent launch failures ("type:
    category: description"); a node type whose launches fail is not counted as starting."""
    from ray._private.state import state

    if state.get_cluster_config() is not None:  # the v2 autoscaler
        from ray.autoscaler.v2.sdk import get_cluster_status

        status = get_cluster_status(ray.get_runtime_context().gcs_address)
        failed = [f"{r.ray_node_type_name}: {r.details}".splitlines()[0] for r in status.failed_launches]
        return bool(status.pending_launches or status.pending_nodes), failed
    report = v1_report()
    records = (report.get("node_availability_summary") or {}).get("node_availabilities") or {}
    down = {kind: r["unavailable_node_information"] for kind, r in records.items()
            if not r.get("is_available", True) and r.get("unavailable_node_information")}
    failed = [f"{kind}: {info['category']}: {info['description']}".splitlines()[0] for kind, info in down.items()]
    starting = bool(report.get("pending_nodes")) or any(kind not in down for kind in report.get("pending_launches") or {})
    return starting, failed


class Rank:
    """A Ray actor: one rank of one replica (the whole replica when tp = 1)."""

    def __init__(self, threads: int):
        import torch

        torch.set_num_threads(threads)
        self.rank, self.embedder = 0, None

    def rendezvous(self) -> tuple[str, int]:
        """This node's address and a port free on it, for the group's TCP store."""
        import ray

        with socket.socket() as s:
            s.bind(("", 0))
            return ray.util.get_node_ip_address(), s.getsockname()[1]

    def load(self, cfg, rank: int, rendezvous: tuple[str, int] | None) -> dict:
        import ray

        from gpo.embed.models import Embedder

        # Ray shows each actor only its own GPU, so every rank's device is cuda:0 and
        # LOCAL_RANK must say so (DeepSpeed would otherwise pick a GPU it cannot see).
        device = "cuda" if ray.get_gpu_ids() else "cpu"
        self.rank = rank
        if cfg.tp > 1:
            import deepspeed

            # LOCAL_SIZE = the whole group: all ranks are on this node, which enables
            # DeepSpeed's shared-memory all-reduce on CPU (named after the rendezvous).
            os.environ.update(RANK=str(rank), WORLD_SIZE=str(cfg.tp), LOCAL_RANK="0", LOCAL_SIZE=str(cfg.tp),
                              MASTER_ADDR=rendezvous[0], MASTER_PORT=str(rendezvous[1]))
            deepspeed.init_distributed(dist_backend="nccl" if device == "cuda" else "gloo")
            if device == "cpu":
                release_shm_buffer(rank, rendezvous)
        self.embedder = Embedder(cfg, device)
        params = sum(p.numel() * p.element_size() for p in self.embedder.net.parameters())
        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id(), "device": device,
                "backend": self.embedder.backend, "param_bytes": params, "rendezvous": rendezvous}

    def embed(self, questions):
        vectors, stats = self.embedder.embed(questions)
        return (vectors, stats) if self.rank == 0 else None  # the other ranks hold the same vectors


def release_shm_buffer(rank: int, rendezvous: tuple[str, int]) -> None:
    """Unlink this rank's DeepSpeed CPU all-reduce buffer once every rank has mapped them all.
    DeepSpeed never removes it, so each run would leave 69 MB per rank in /dev/shm (RAM) for
    good; the mappings stay valid until the ranks exit."""
    import torch.distributed as dist

    dist.barrier()  # every rank is past DeepSpeed's shm setup, which opens every rank's buffer
    Path(f"/dev/shm/deepspeed_allreduce_buffer_{os.getuid()}_{rendezvous[0]}_{rendezvous[1]}_{rank}").unlink(missing_ok=True)


class Replica:
    """Driver-side handle of one replica: its placement group, its rank actors, their loading."""

    def __init__(self, ray, cfg, res: RankResources):
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        self.ray, self.tp = ray, cfg.tp
        self.group = placement_group([res.bundle()] * cfg.tp, strategy="STRICT_PACK")
        env = {"TOKENIZERS_PARALLELISM": "false", "DS_ACCELERATOR": "cuda" if res.gpus else "cpu"}
        actor = ray.remote(Rank)
        self.ranks = [actor.options(num_cpus=res.cpus, num_gpus=res.gpus, max_restarts=0, max_task_retries=0,
                                    runtime_env={"env_vars": env},
                                    scheduling_strategy=PlacementGroupSchedulingStrategy(self.group, placement_group_bundle_index=i))
                      .remote(res.threads) for i in range(cfg.tp)]
        rendezvous = self.ranks[0].rendezvous.remote() if cfg.tp > 1 else None
        self.loading = [rank.load.remote(cfg, i, rendezvous) for i, rank in enumerate(self.ranks)]
        self.info: list[dict | None] = [None] * cfg.tp
        self.stopped = False

    @property
    def ready(self) -> bool:
        return all(self.info)

    def placed(self) -> bool:
        """Whether a node has taken the ranks' placement group (the ranks may still be loading)."""
        from ray.util import placement_group_table

        return placement_group_table(self.group).get("state") == "CREATED"

    def embed(self, questions) -> list:
        """One task per rank on the same inputs; rank 0's result holds the vectors. Ray runs one
        caller's tasks on an actor in the order sent, so every rank meets the same shards' collectives
        in the same order."""
        shared = self.ray.put(questions)
        return [rank.embed.remote(shared) for rank in self.ranks]

    def stop(self) -> None:
        from ray.util.placement_group import remove_placement_group

        if self.stopped:
            return
        self.stopped = True
        for rank in self.ranks:
            self.ray.kill(rank)
        remove_placement_group(self.group)


def describe(error: BaseException) -> str:
    """One line naming what went wrong inside a replica (the innermost cause Ray kept)."""
    from ray.exceptions import RayActorError, RayTaskError

    cause = error
    while isinstance(cause, RayTaskError) and cause.cause is not None and cause.cause is not cause:
        cause = cause.cause
    if isinstance(cause, RayActorError):
        text = cause.error_msg or str(cause)
    else:
        text = f"{type(cause).__name__}: {cause}"
    return " ".join(line.strip() for line in text.strip().splitlines()[:1]) or type(cause).__name__
