"""Evaluation of a large synthetic panel over a simulated multi-node Ray cluster, with a node
removed mid-evaluation: `ray.cluster_utils.Cluster` (a head that runs nothing and --nodes
worker raylets of one CPU each, all on this machine), every method (the baselines with their
validation-chosen settings and an untrained GPO of configs/individual.yaml) on the test
respondents, a Ray task per shard. Once the first shard is kept, one worker node is removed
(its process killed, not drained); its shard in flight is retried on the others. Prints the
wall time, the shards, when the node went, and checks two shards against the same shards
scored in this process.

    python bench/eval_cluster.py --respondents 100000 --questions 100 --nodes 4
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--respondents", type=int, default=100_000)
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--ks", nargs="*", type=int, default=[0, 5, 10, 20])
    parser.add_argument("--shard-tasks", type=int, default=2500)
    parser.add_argument("--max-test", type=int, help="evaluate this many test respondents (default: all)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import ray
    from ray.cluster_utils import Cluster

    from gpo.config import load_config
    from gpo.data.synthetic import SyntheticRespondents
    from gpo.evaluate import Work, episodes, evaluate
    from gpo.inputs import assemble, load_respondents
    from gpo.methods import build, feature_params, gpo_features, gpo_method
    from gpo.model import GPO
    from gpo.selection import baseline, choose
    from gpo.shards import ShardStore, sharded

    torch.set_num_threads(2)
    cfg = load_config("configs/individual.yaml", ["embed.model=synthetic", f"eval.ks={args.ks}", f"train.val_k={args.ks[-1]}",
                                                  "eval.draws=1", "data.val_fraction=0.025"])
    responses, x, _ = SyntheticRespondents(n_respondents=args.respondents, n_questions=args.questions).build()
    data, split = load_respondents(cfg, responses)
    prep = assemble(data, split, x, "cpu")
    methods, _, _ = build(prep, cfg, [])
    features = gpo_features(prep, cfg.model, feature_params(prep, cfg))
    prior = baseline(cfg.model.prior, choose(prep, cfg, cfg.model.prior))
    methods = {"gpo": gpo_method(GPO(cfg.model, features.width).eval(), features, prior), **methods}
    test = prep.index(split.test)
    if args.max_test:
        test = sorted(np.random.default_rng(0).choice(test, args.max_test, replace=False).tolist())

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False,
        "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3}})
    workers = [cluster.add_node(num_cpus=1) for _ in range(args.nodes)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level=logging.WARNING)
    removed = []

    class RemovingANode(ShardStore):
        def put(self, i, values):
            super().put(i, values)
            if not removed:
                cluster.remove_node(workers[-1], allow_graceful=False)
                removed.append((len(list(self.folder.iterdir())), time.perf_counter() - start))

    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = RemovingANode(Path(tmp) / "test")
            start = time.perf_counter()
            evaluate(methods, prep.points, prep.labels, prep.basis, test, data.tasks, args.ks, 1, cfg.eval.seed, prep.chunk,
                     metrics=prep.metrics, runner=sharded(args.shard_tasks, store, "ray"))
            wall = time.perf_counter() - start
            plan = [(k, *episodes(prep.points, test, k, 1, cfg.eval.seed)) for k in args.ks]
            work = Work(methods, prep.points, prep.labels, prep.basis, plan, 1, prep.metrics, prep.chunk)
            n_shards = -(-len(test) // args.shard_tasks)
            for i in (0, n_shards - 1):
                a, b = i * args.shard_tasks, min((i + 1) * args.shard_tasks, len(test))
                assert np.array_equal(store.get(i), work(a, b)), f"shard {i} differs from this process's"
    finally:
        ray.shutdown()
        cluster.shutdown()
    print(f"{args.respondents:,} respondents x {args.questions} questions: {len(test):,} test respondents, "
          f"{len(methods)} methods, {len(args.ks)} k's, {n_shards} shards of {args.shard_tasks} on {args.nodes} one-CPU "
          f"worker nodes (this machine's cores shared)")
    print(f"  a worker node removed after {removed[0][0]} shard(s) were kept ({removed[0][1]:.0f} s in)")
    print(f"  evaluation {wall:.0f} s; shards 0 and {n_shards - 1} equal to this process's")


if __name__ == "__main__":
    main()
