"""Evaluation in shards (gpo/shards.py): the shards' scores put together are what one pass
gives, a stopped evaluation resumes from the shards it kept and scores only the rest, and a
run's kept shards go once its results are written."""

import numpy as np
import pandas as pd
import pytest

from gpo.baselines import baseline_method
from gpo.config import load_config
from gpo.data.synthetic import SyntheticRespondents
from gpo.evaluate import evaluate
from gpo.inputs import assemble, load_respondents
from gpo.shards import ShardStore, sharded, use_ray

CFG = load_config("configs/individual.yaml", ["embed.model=synthetic", "eval.ks=[0,5,20]", "train.val_k=5"])
RESPONSES, X, _ = SyntheticRespondents(n_respondents=400, n_questions=40).build()
DATA, SPLIT = load_respondents(CFG, RESPONSES)
PREP = assemble(DATA, SPLIT, X, "cpu")
TEST = PREP.index(SPLIT.test)
METHODS = {name: baseline_method(name) for name in ("population", "knn", "lowrank")}


def run(methods=METHODS, runner=None):
    kw = {"runner": runner} if runner else {}
    return evaluate(methods, PREP.points, PREP.labels, PREP.basis, TEST, DATA.tasks, [0, 5, 20], 3, 0,
                    metrics=PREP.metrics, **kw)


WHOLE = run()


def test_shards_put_together_equal_one_pass():
    pd.testing.assert_frame_equal(run(runner=sharded(17, backend="process")), WHOLE)


def test_a_stopped_evaluation_resumes_from_its_kept_shards(tmp_path):
    store = ShardStore(tmp_path / "val")
    calls = []

    def failing_after(rows):
        def knn(points, panel, episode, **kw):
            calls.append(episode.tasks.shape[0])
            if sum(calls) > rows:
                raise KeyboardInterrupt  # the user stops it
            return baseline_method("knn")(points, panel, episode)
        return {**METHODS, "knn": knn}

    with pytest.raises(KeyboardInterrupt):  # stopped in the third shard
        run(failing_after(2 * 100 * 7), sharded(100, store, "process"))  # 2 shards x 100 tasks x 7 draws (k = 0 scores one)
    assert sorted(p.name for p in store.folder.iterdir()) == ["shard-0.npy", "shard-1.npy"]
    calls.clear()
    resumed = run(failing_after(10**6), sharded(100, store, "process"))
    n_test = len(TEST)
    assert sum(calls) == 7 * (n_test - 200)  # draws (1 + 3 + 3 over the k's) x the tasks of the shards not kept
    pd.testing.assert_frame_equal(resumed, WHOLE)


def test_a_shard_is_written_whole_or_not_at_all(tmp_path):
    store = ShardStore(tmp_path)
    store.put(0, np.arange(6.0).reshape(2, 3))
    assert store.get(1) is None and np.array_equal(store.get(0), np.arange(6.0).reshape(2, 3))
    assert [p.name for p in tmp_path.iterdir()] == ["shard-0.npy"]  # no temporary file left


def test_keys_name_what_the_scores_depend_on(tmp_path):
    a = ShardStore.keyed(tmp_path, "test", {"methods": ["knn"], "groups": ["1", "2"]})
    assert a == ShardStore.keyed(tmp_path, "test", {"groups": ["1", "2"], "methods": ["knn"]})
    assert a != ShardStore.keyed(tmp_path, "test", {"methods": ["knn"], "groups": ["1", "3"]})


def test_auto_stays_in_process_without_a_cluster(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert not use_ray("auto") and use_ray("ray") and not use_ray("process")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert use_ray("auto")


def test_draws_that_drew_the_same_questions_are_scored_once_with_the_same_numbers(monkeypatch):
    import gpo.evaluate
    from gpo.evaluate import episodes, same_draws

    assert same_draws(episodes(PREP.points, TEST, 0, 3, 0)[1], 3)  # k = 0: every draw's targets are all questions
    assert not same_draws(episodes(PREP.points, TEST, 5, 3, 0)[1], 3)
    monkeypatch.setattr(gpo.evaluate, "same_draws", lambda q, draws: False)
    pd.testing.assert_frame_equal(run(), WHOLE)


def test_a_runs_stopped_evaluation_resumes_and_leaves_no_shards(tmp_path, monkeypatch):
    from dataclasses import replace

    from gpo.pipeline import EVALUATION, evaluate_roles

    cfg = load_config("configs/individual.yaml", ["embed.model=synthetic", "eval.ks=[0,5,20]", "train.val_k=5",
                                                  "eval.draws=3", "eval.shard_tasks=50", f"out_dir={tmp_path}"])
    seen = []

    def knn(points, panel, episode, **kw):
        seen.append(episode.tasks.shape[0])
        if stop_after and sum(seen) > stop_after:
            raise KeyboardInterrupt
        return baseline_method("knn")(points, panel, episode)

    prep = replace(PREP, split=SPLIT)
    stop_after = 7 * (len(SPLIT.val) + 100)  # draws (1 + 3 + 3) x tasks: stopped in the test respondents' third shard
    with pytest.raises(KeyboardInterrupt):
        evaluate_roles(prep, cfg, {**METHODS, "knn": knn})
    kept = sorted(p.parent.name.split("-")[0] + "/" + p.name for p in (cfg.run_dir / EVALUATION).rglob("shard-*.npy"))
    assert kept == ["test/shard-0.npy", "test/shard-1.npy", "val/shard-0.npy"]
    stop_after, seen[:] = 0, []
    results = evaluate_roles(prep, cfg, {**METHODS, "knn": knn})
    n_test = len(SPLIT.test)
    assert sum(seen) == 7 * (n_test - 100)  # the kept shards (every validation task, 100 test tasks) not scored again
    test = results[results.role == "test"].drop(columns=["role", "run", "dataset", "unit", "train_fraction", "split_seed",
                                                         "seed", "protocol", "validation", "aggregate", "weight"])
    whole = evaluate(METHODS, PREP.points, PREP.labels, PREP.basis, TEST, DATA.tasks, [0, 5, 20], 3, cfg.eval.seed,
                     metrics=PREP.metrics)
    pd.testing.assert_frame_equal(test.reset_index(drop=True), whole)
    assert not (cfg.run_dir / EVALUATION).exists()
