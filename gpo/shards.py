"""Evaluation in shards: runs of consecutive tasks scored here or as Ray tasks, each kept in the
run folder as it finishes.

Every episode is drawn before any shard runs (gpo/evaluate.py), so a shard's scores do not
depend on where, when or beside what it ran, and the shards' scores put together are exactly
what one pass gives. On Ray the work (methods, survey, episodes) goes into the object store
once; a shard whose worker or node dies is retried by Ray (`RETRIES`), and a shard that raises
stops the evaluation with its error. A stopped evaluation resumes from the shards kept: a
shard is written once, atomically, under a key naming the methods and episodes it scored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpo.evaluate import Work

log = logging.getLogger(__name__)

RETRIES = 3  # Ray retries of a shard whose worker process or node died


@dataclass
class ShardStore:
    """Finished shards of one evaluation (a role of a run): folder/shard-{i}.npy."""

    folder: Path

    @classmethod
    def keyed(cls, root: Path, name: str, identity: dict) -> "ShardStore":
        """The store under `root` for `name` and what the scores depend on (`identity`, JSON)."""
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
        return cls(root / f"{name}-{digest}")

    def path(self, i: int) -> Path:
        return self.folder / f"shard-{i}.npy"

    def get(self, i: int) -> np.ndarray | None:
        return np.load(self.path(i)) if self.path(i).is_file() else None

    def put(self, i: int, values: np.ndarray) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.path(i).with_suffix(".tmp.npy")
        np.save(tmp, values)
        tmp.replace(self.path(i))


def use_ray(backend: str) -> bool:
    """"ray", "process", or "auto": Ray when this process is a Ray driver or was given a cluster
    (RAY_ADDRESS: a submitted job), never inside a Ray worker (a sweep's trial keeps to its
    CPUs). On one machine, in process was faster than a local Ray (BENCHMARKS.md)."""
    if backend != "auto":
        return backend == "ray"
    import ray

    if ray.is_initialized():
        return ray.get_runtime_context().worker.mode == ray.SCRIPT_MODE
    return bool(os.environ.get("RAY_ADDRESS"))


def sharded(shard_tasks: int, store: ShardStore | None = None, backend: str = "process", ray_address: str = ""):
    """An evaluation runner (gpo/evaluate.py) scoring `shard_tasks` tasks at a time, here or
    as Ray tasks (`backend`, see use_ray), keeping each finished shard in `store`."""
    def run(work: Work, n_tasks: int, bar) -> np.ndarray:
        per_task = len(work.plan) * len(work.methods)
        bounds = [(a, min(a + shard_tasks, n_tasks)) for a in range(0, n_tasks, shard_tasks)]
        done = {}
        for i, (a, b) in enumerate(bounds):
            kept = store.get(i) if store else None
            if kept is not None:
                done[i] = kept
                bar.update((b - a) * per_task)
        todo = {i: bounds[i] for i in range(len(bounds)) if i not in done}
        if done and todo:
            log.info("%d of %d shards kept from an earlier evaluation: %d left", len(done), len(bounds), len(todo))
        on_ray = bool(todo) and use_ray(backend)
        finished = over_ray(work, todo, ray_address) if on_ray else (
            (i, work(a, b, bar.update)) for i, (a, b) in todo.items())
        for i, values in finished:
            if store:
                store.put(i, values)
            done[i] = values
            if on_ray:
                bar.update((bounds[i][1] - bounds[i][0]) * per_task)
        return np.concatenate([done[i] for i in range(len(bounds))], axis=2) if bounds else work(0, 0)
    return run


def score_shard(work: Work, start: int, stop: int) -> np.ndarray:
    return work(start, stop)


def over_ray(work: Work, shards: dict[int, tuple[int, int]], address: str):
    """(shard, scores) of every shard as each finishes, one Ray task per shard (one CPU each)."""
    from gpo.embed.distributed import init_ray

    ray = init_ray(address or os.environ.get("RAY_ADDRESS") or "local")
    shared = ray.put(work)
    task = ray.remote(num_cpus=1, max_retries=RETRIES)(score_shard)
    pending = {task.remote(shared, a, b): i for i, (a, b) in shards.items()}
    log.info("evaluating %d shard(s) as Ray tasks", len(pending))
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        yield pending.pop(ready[0]), ray.get(ready[0])
